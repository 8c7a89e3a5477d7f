//! A user's address books and calendars copied between real servers:
//! Radicale to Xandikos and Xandikos to Radicale.

use std::collections::BTreeMap;

use flytt_dav::{
    Collection, CollectionKind, CopyOptions, DavAccount, DavClient, DavReport, Put, Resource,
    copy_user,
};
use flytt_testsupport::dav::{self, DavFamily, DavServer};
use url::Url;

/// Without deletion sync, as batches copy by default.
const KEEP: CopyOptions = CopyOptions {
    delete_removed: false,
};

const USER: &str = "alice";
const PASSWORD: &str = "dav-password-1";

fn client(server: &DavServer) -> DavClient {
    let account = DavAccount {
        url: Url::parse(&server.url(USER).expect("user")).expect("url"),
        user: USER.into(),
        password: PASSWORD.into(),
        owner: None,
        trust: flytt_tls::Trust::default(),
    };
    DavClient::new(account).expect("client")
}

const ADMIN: (&str, &str) = ("dav-admin", "admin-password-1");

/// The admin opening `user`'s collections, at the server's URL template
/// with the user in it (as an endpoint's `{user}` DAV URL is used).
fn admin_client(server: &DavServer, user: &str) -> DavClient {
    let template = server.url_template().expect("template");
    let account = DavAccount {
        url: Url::parse(&template.replace("{user}", user)).expect("url"),
        user: ADMIN.0.into(),
        password: ADMIN.1.into(),
        owner: Some(user.into()),
        trust: flytt_tls::Trust::default(),
    };
    DavClient::new(account).expect("client")
}

fn start(family: DavFamily) -> DavServer {
    DavServer::start(family, &[(USER, PASSWORD)]).expect("DAV server starts")
}

async fn home(client: &DavClient, kind: CollectionKind) -> Url {
    client.homes(kind).await.expect("discovery")[0].clone()
}

/// Makes the collection `name` of `kind` in the user's home with `props`;
/// its URL.
async fn make(
    client: &DavClient,
    kind: CollectionKind,
    name: &str,
    props: flytt_dav::xml::Props,
) -> Url {
    let url = client
        .home_for_writing(kind)
        .await
        .expect("home")
        .join(name)
        .expect("url");
    let like = Collection {
        url: url.clone(),
        kind,
        props,
    };
    client
        .make_collection(&url, &like)
        .await
        .expect("collection made");
    url
}

/// The source's collections: an address book and a calendar with their
/// properties, and the corpus in them.
async fn seed(source: &DavClient) {
    let props = flytt_dav::xml::Props {
        display_name: Some("Kontakter på jobb".into()),
        description: Some("Kolleger & kunder".into()),
        ..Default::default()
    };
    let contacts = make(source, CollectionKind::AddressBook, "kontakter/", props).await;
    put_all(source, &contacts, &dav::contacts(), "text/vcard").await;

    let props = flytt_dav::xml::Props {
        display_name: Some("Arbeid".into()),
        description: Some("Møter og frister".into()),
        color: Some("#3A87ADFF".into()),
        components: vec!["VEVENT".into(), "VTODO".into()],
        ..Default::default()
    };
    let work = make(source, CollectionKind::Calendar, "arbeid/", props).await;
    put_all(source, &work, &dav::calendar_items(), "text/calendar").await;
}

async fn put_all(client: &DavClient, collection: &Url, items: &[(String, String)], mime: &str) {
    for (name, body) in items {
        let resource = Resource {
            body: body.clone(),
            content_type: Some(format!("{mime}; charset=utf-8")),
            etag: None,
        };
        let url = collection.join(name).expect("url");
        let put = client.put_new(&url, &resource).await.expect("PUT");
        assert!(matches!(put, Put::Created { .. }), "{name}: {put:?}");
    }
}

/// Every resource of `kind` on `client`, by collection name and file name,
/// normalised.
async fn contents(
    client: &DavClient,
    kind: CollectionKind,
) -> BTreeMap<(String, String), Vec<String>> {
    let home = home(client, kind).await;
    let mut found = BTreeMap::new();
    for collection in client.collections(&home, kind).await.expect("collections") {
        let name = segment(&collection.url);
        for listed in client.resources(&collection.url).await.expect("resources") {
            let body = client.get(&listed.url).await.expect("GET").body;
            found.insert((name.clone(), segment(&listed.url)), dav::normalise(&body));
        }
    }
    found
}

fn segment(url: &Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.rfind(|s| !s.is_empty()))
        .unwrap_or_default()
        .to_string()
}

async fn collection_props(
    client: &DavClient,
    kind: CollectionKind,
    name: &str,
) -> flytt_dav::xml::Props {
    let home = home(client, kind).await;
    client
        .collections(&home, kind)
        .await
        .expect("collections")
        .into_iter()
        .find(|c| segment(&c.url) == name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .props
}

fn assert_counts(report: &DavReport, copied: u64, already: u64) {
    assert_eq!(report.contacts.found, 4, "{report:?}");
    assert_eq!(report.events.found, 2, "{report:?}");
    assert_eq!(report.tasks.found, 1, "{report:?}");
    let copied_all = report.contacts.copied + report.events.copied + report.tasks.copied;
    assert_eq!(
        report.contacts.updated + report.events.updated,
        0,
        "{report:?}"
    );
    let already_all =
        report.contacts.already_there + report.events.already_there + report.tasks.already_there;
    assert_eq!((copied_all, already_all), (copied, already), "{report:?}");
    assert!(report.refused.is_empty(), "{:?}", report.refused);
}

async fn copies_everything_once(from: DavFamily, to: DavFamily) {
    let (source_server, target_server) = (start(from), start(to));
    let (source, target) = (client(&source_server), client(&target_server));
    let store = flytt_store::Store::in_memory().await.expect("store");
    seed(&source).await;

    let first = copy_user(&source, &target, &store, KEEP)
        .await
        .expect("copy");
    assert_counts(&first, 7, 0);
    assert_eq!(first.collections_created, 2, "{first:?}");
    for kind in [CollectionKind::AddressBook, CollectionKind::Calendar] {
        let (on_source, on_target) = (contents(&source, kind).await, contents(&target, kind).await);
        assert!(!on_source.is_empty());
        assert_eq!(
            on_source,
            on_target,
            "{} → {}: {kind}",
            from.name(),
            to.name()
        );
    }
    // The collections keep what the source has of their properties, and
    // what a target did not keep is in the report, by name.
    for (kind, name) in [
        (CollectionKind::AddressBook, "kontakter"),
        (CollectionKind::Calendar, "arbeid"),
    ] {
        let calendar = kind == CollectionKind::Calendar;
        let on_source = collection_props(&source, kind, name).await;
        let on_target = collection_props(&target, kind, name).await;
        assert!(on_source.display_name.is_some());
        let lost = flytt_dav::xml::missing_properties(&on_source, &on_target, calendar);
        let lost = flytt_dav::xml::property_names(&lost, calendar);
        let reported: Vec<&str> = first
            .properties_refused
            .iter()
            .filter(|(path, _)| path.trim_end_matches('/').ends_with(name))
            .map(|(_, property)| property.as_str())
            .collect();
        assert_eq!(lost, reported, "{} → {}: {name}", from.name(), to.name());
    }
    if from == DavFamily::Radicale {
        // Radicale keeps every property the test sets: the comparison
        // above covered them all.
        let calendar = collection_props(&source, CollectionKind::Calendar, "arbeid").await;
        assert_eq!(calendar.description.as_deref(), Some("Møter og frister"));
        assert_eq!(calendar.color.as_deref(), Some("#3A87ADFF"));
        assert_eq!(calendar.components.len(), 2);
        let book = collection_props(&source, CollectionKind::AddressBook, "kontakter").await;
        assert_eq!(book.description.as_deref(), Some("Kolleger & kunder"));
        // A Xandikos target keeps neither a calendar's description nor
        // its components: flytt says so.
        assert!(
            first
                .properties_refused
                .iter()
                .any(|(_, p)| p == "calendar-description"),
            "{first:?}"
        );
    } else {
        // Radicale keeps everything.
        assert!(first.properties_refused.is_empty(), "{first:?}");
    }

    // Both families keep sync-collection tokens: the next copy asks for
    // the changes since them, not for every member.
    let pair = store
        .mailbox_pair(&source.account_key(), &target.account_key(), None)
        .await
        .expect("pair");
    for (kind, name) in [
        (CollectionKind::AddressBook, "kontakter/"),
        (CollectionKind::Calendar, "arbeid/"),
    ] {
        let path = home(&source, kind).await.join(name).expect("url");
        assert!(
            store
                .dav_sync_token(pair, path.path())
                .await
                .expect("token")
                .is_some(),
            "{}: {name}",
            from.name()
        );
        // A token the server no longer knows (it forgot its history):
        // refused, and the collection is listed in full instead.
        store
            .set_dav_sync_token(pair, path.path(), "http://127.0.0.1/sync/forgotten-0")
            .await
            .expect("token");
    }

    // Again: nothing is written twice.
    let second = copy_user(&source, &target, &store, KEEP)
        .await
        .expect("second copy");
    assert_counts(&second, 0, 7);
    assert_eq!(second.collections_created, 0);
    assert_eq!(
        contents(&source, CollectionKind::AddressBook).await,
        contents(&target, CollectionKind::AddressBook).await
    );
}

#[tokio::test]
async fn radicale_to_xandikos_copies_contacts_and_calendars_once() {
    copies_everything_once(DavFamily::Radicale, DavFamily::Xandikos).await;
}

#[tokio::test]
async fn xandikos_to_radicale_copies_contacts_and_calendars_once() {
    copies_everything_once(DavFamily::Xandikos, DavFamily::Radicale).await;
}

/// A run broken off after some resources: the next copies the rest and
/// nothing twice.
#[tokio::test]
async fn a_copy_broken_off_midway_is_finished_without_doubles() {
    let (source_server, target_server) = (start(DavFamily::Radicale), start(DavFamily::Radicale));
    let (source, target) = (client(&source_server), client(&target_server));
    let store = flytt_store::Store::in_memory().await.expect("store");
    seed(&source).await;
    // What a killed run left: the address book made, two contacts in it.
    let props = flytt_dav::xml::Props {
        display_name: Some("Kontakter på jobb".into()),
        ..Default::default()
    };
    let contacts = make(&target, CollectionKind::AddressBook, "kontakter/", props).await;
    put_all(&target, &contacts, &dav::contacts()[..2], "text/vcard").await;

    let report = copy_user(&source, &target, &store, KEEP)
        .await
        .expect("copy");
    assert_counts(&report, 5, 2);
    assert_eq!(
        report.collections_created, 1,
        "only the calendar was missing"
    );
    for kind in [CollectionKind::AddressBook, CollectionKind::Calendar] {
        assert_eq!(contents(&source, kind).await, contents(&target, kind).await);
    }
}

/// A contact changed on the source after the copy is updated on the
/// target on the next run; one changed on both sides keeps the target's
/// version and says so. On both server families as target.
async fn changes_follow(from: DavFamily, to: DavFamily) {
    let (source_server, target_server) = (start(from), start(to));
    let (source, target) = (client(&source_server), client(&target_server));
    let store = flytt_store::Store::in_memory().await.expect("store");
    seed(&source).await;
    copy_user(&source, &target, &store, KEEP)
        .await
        .expect("copy");

    let books = home(&source, CollectionKind::AddressBook).await;
    let ola = books.join("kontakter/ola-nordmann.vcf").expect("url");
    let changed = dav::contacts()[0]
        .1
        .replace("+47 912 34 567", "+47 400 00 000");
    let resource = |body: &str| Resource {
        body: body.to_string(),
        content_type: Some("text/vcard".into()),
        etag: None,
    };
    let put = source
        .put(&ola, &resource(&changed), &flytt_dav::Precondition::Any)
        .await
        .expect("PUT");
    assert!(matches!(put, Put::Created { .. }), "{put:?}");

    let second = copy_user(&source, &target, &store, KEEP)
        .await
        .expect("copy");
    assert_eq!(second.contacts.updated, 1, "{second:?}");
    assert_eq!(second.contacts.already_there, 3, "{second:?}");
    assert_eq!(second.contacts.copied, 0, "{second:?}");
    assert!(second.refused.is_empty(), "{second:?}");
    assert_eq!(
        contents(&source, CollectionKind::AddressBook).await,
        contents(&target, CollectionKind::AddressBook).await,
        "{} → {}",
        from.name(),
        to.name()
    );

    // Changed on both sides: the target's own change is not overwritten.
    let target_books = home(&target, CollectionKind::AddressBook).await;
    let ola_there = target_books
        .join("kontakter/ola-nordmann.vcf")
        .expect("url");
    let theirs = changed.replace("+47 400 00 000", "+47 111 11 111");
    target
        .put(
            &ola_there,
            &resource(&theirs),
            &flytt_dav::Precondition::Any,
        )
        .await
        .expect("PUT");
    let ours = changed.replace("+47 400 00 000", "+47 222 22 222");
    source
        .put(&ola, &resource(&ours), &flytt_dav::Precondition::Any)
        .await
        .expect("PUT");
    let third = copy_user(&source, &target, &store, KEEP)
        .await
        .expect("copy");
    assert_eq!(third.contacts.updated, 0, "{third:?}");
    assert_eq!(third.contacts.skipped, 1, "{third:?}");
    assert!(
        third
            .refused
            .iter()
            .any(|r| r.source.ends_with("ola-nordmann.vcf")
                && r.reason.contains("changed on the source and on the target")),
        "{third:?}"
    );
    let kept = target.get(&ola_there).await.expect("GET").body;
    assert!(kept.contains("+47 111 11 111"), "{kept}");
}

#[tokio::test]
async fn a_change_on_the_source_reaches_a_xandikos_target() {
    changes_follow(DavFamily::Radicale, DavFamily::Xandikos).await;
}

#[tokio::test]
async fn a_change_on_the_source_reaches_a_radicale_target() {
    changes_follow(DavFamily::Xandikos, DavFamily::Radicale).await;
}

/// An admin login opens a user's collections where the endpoint's URL
/// template says they are: the copy lands where the user's own login sees
/// it, on a target where the user never logged in, and a second run by the
/// admin finds the first one's checkpoints.
async fn an_admin_copies_for_the_user(from: DavFamily, to: DavFamily) {
    let users = [(USER, PASSWORD), ("bob", "dav-password-2")];
    let start = |family| DavServer::start_with_admin(family, ADMIN, &users, None).expect("start");
    let (source_server, target_server) = (start(from), start(to));
    let store = flytt_store::Store::in_memory().await.expect("store");
    seed(&admin_client(&source_server, USER)).await;
    let (source, target) = (
        admin_client(&source_server, USER),
        admin_client(&target_server, USER),
    );

    let first = copy_user(&source, &target, &store, KEEP)
        .await
        .expect("copy");
    assert_counts(&first, 7, 0);
    // Where the user looks: their own login on Radicale; Xandikos has no
    // logins, its admin sees the user's collections.
    let seen_by_user = |server: &DavServer| match server.family() {
        DavFamily::Radicale => client(server),
        DavFamily::Xandikos => admin_client(server, USER),
    };
    for kind in [CollectionKind::AddressBook, CollectionKind::Calendar] {
        let on_source = contents(&seen_by_user(&source_server), kind).await;
        assert!(!on_source.is_empty());
        assert_eq!(
            on_source,
            contents(&seen_by_user(&target_server), kind).await,
            "{} → {}: {kind}",
            from.name(),
            to.name()
        );
    }
    // Bob has nothing: nothing to copy, and nothing made for him.
    let bob = copy_user(
        &admin_client(&source_server, "bob"),
        &admin_client(&target_server, "bob"),
        &store,
        KEEP,
    )
    .await
    .expect("copy");
    assert_eq!(bob, DavReport::default());

    let again = copy_user(&source, &target, &store, KEEP)
        .await
        .expect("copy");
    assert_counts(&again, 0, 7);
}

#[tokio::test]
async fn an_admin_copies_from_radicale_to_xandikos() {
    an_admin_copies_for_the_user(DavFamily::Radicale, DavFamily::Xandikos).await;
}

#[tokio::test]
async fn an_admin_copies_from_xandikos_to_radicale() {
    an_admin_copies_for_the_user(DavFamily::Xandikos, DavFamily::Radicale).await;
}

/// Deletions on the source reach the target only with deletion sync, and
/// only for what flytt copied and the target left as it was: a contact
/// changed on the target is kept and reported, one the target made itself
/// is never touched, and a whole calendar gone from the source is kept and
/// reported. A sync without deletion sync leaves a deletion on the target
/// for good. On both families as target.
async fn deletions_follow_when_asked(from: DavFamily, to: DavFamily) {
    let (source_server, target_server) = (start(from), start(to));
    let (source, target) = (client(&source_server), client(&target_server));
    let store = flytt_store::Store::in_memory().await.expect("store");
    seed(&source).await;
    copy_user(&source, &target, &store, KEEP)
        .await
        .expect("copy");
    let target_books = home(&target, CollectionKind::AddressBook)
        .await
        .join("kontakter/")
        .expect("url");
    put_all(
        &target,
        &target_books,
        &[(
            "egen.vcf".into(),
            "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:egen\r\nFN:Egen Kontakt\r\nN:Kontakt;Egen;;;\r\nEND:VCARD\r\n".into(),
        )],
        "text/vcard",
    )
    .await;
    let source_books = home(&source, CollectionKind::AddressBook)
        .await
        .join("kontakter/")
        .expect("url");
    let names: Vec<String> = dav::contacts().into_iter().map(|(name, _)| name).collect();
    let delete_on_source = |name: &str| {
        let url = source_books.join(name).expect("url");
        let source = &source;
        async move {
            let deleted = source
                .delete(&url, &flytt_dav::Precondition::Any)
                .await
                .expect("DELETE");
            assert_eq!(deleted, flytt_dav::Delete::Deleted);
        }
    };
    let names_on_target = || async {
        let mut names: Vec<String> = contents(&target, CollectionKind::AddressBook)
            .await
            .into_keys()
            .map(|(_, name)| name)
            .collect();
        names.sort();
        names
    };

    // Without deletion sync, a deletion stays on the source.
    delete_on_source(&names[0]).await;
    let kept = copy_user(&source, &target, &store, KEEP)
        .await
        .expect("copy");
    assert_eq!(kept.contacts.deleted, 0, "{kept:?}");
    assert_eq!(kept.contacts.found, 3, "{kept:?}");
    assert_eq!(names_on_target().await.len(), 5);

    // With it: two more contacts deleted on the source, one of them
    // changed on the target meanwhile, and the calendar as a whole.
    delete_on_source(&names[1]).await;
    delete_on_source(&names[2]).await;
    let changed_there = target_books.join(&names[1]).expect("url");
    let mut body = target.get(&changed_there).await.expect("GET").body;
    body = body.replace("END:VCARD", "NOTE:endret på målet\r\nEND:VCARD");
    let resource = Resource {
        body,
        content_type: Some("text/vcard".into()),
        etag: None,
    };
    target
        .put(&changed_there, &resource, &flytt_dav::Precondition::Any)
        .await
        .expect("PUT");
    let calendar = home(&source, CollectionKind::Calendar)
        .await
        .join("arbeid/")
        .expect("url");
    source
        .delete(&calendar, &flytt_dav::Precondition::Any)
        .await
        .expect("DELETE");
    let delete = CopyOptions {
        delete_removed: true,
    };
    let synced = copy_user(&source, &target, &store, delete)
        .await
        .expect("copy");
    assert_eq!(synced.contacts.deleted, 1, "{synced:?}");
    assert_eq!(synced.contacts.found, 1, "{synced:?}");
    let mut expected = vec![
        "egen.vcf".to_string(),
        names[0].clone(),
        names[1].clone(),
        names[3].clone(),
    ];
    expected.sort();
    assert_eq!(
        names_on_target().await,
        expected,
        "{} → {}",
        from.name(),
        to.name()
    );
    assert!(
        synced
            .refused
            .iter()
            .any(|r| r.source.ends_with(&names[1]) && r.reason.contains("changed on the target")),
        "{synced:?}"
    );
    assert!(
        synced
            .refused
            .iter()
            .any(|r| r.source.ends_with("/arbeid/") && r.reason.contains("gone from the source")),
        "{synced:?}"
    );
    assert_eq!(contents(&target, CollectionKind::Calendar).await.len(), 3);

    // Done once: the next run deletes nothing more, and still keeps the
    // contact changed on the target.
    let again = copy_user(&source, &target, &store, delete)
        .await
        .expect("copy");
    assert_eq!(again.contacts.deleted, 0, "{again:?}");
    assert_eq!(names_on_target().await, expected);
}

#[tokio::test]
async fn deletions_reach_a_xandikos_target_when_asked() {
    deletions_follow_when_asked(DavFamily::Radicale, DavFamily::Xandikos).await;
}

#[tokio::test]
async fn deletions_reach_a_radicale_target_when_asked() {
    deletions_follow_when_asked(DavFamily::Xandikos, DavFamily::Radicale).await;
}
