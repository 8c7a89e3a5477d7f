//! The IMAP operations flytt performs, on top of `Session`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::command::{CommandBuilder, uid_set};
use crate::connection::{Reply, Session};
use crate::error::{Error, Result};
use crate::oauth::OAuthToken;
use crate::response::Untagged;
use std::collections::HashMap;

use crate::types::{
    FetchedMessage, Flag, FolderStatus, ListedMailbox, MailboxStatus, ModSeq, Namespace,
    Namespaces, Overview, Quota, ResponseCode, Secret, Uid, UidRanges,
};

/// How to log in.
#[derive(Clone, Debug)]
pub enum Auth {
    /// LOGIN.
    Login { user: String, password: Secret },
    /// LOGIN as `user*admin`: a Dovecot master user opening `user`'s mailbox.
    Master {
        user: String,
        admin: String,
        password: Secret,
    },
    /// AUTHENTICATE PLAIN; with `authorize_as`, the admin form: log in as
    /// `user` (an administrator) and open `authorize_as`'s mailbox.
    Plain {
        user: String,
        password: Secret,
        authorize_as: Option<String>,
    },
    /// AUTHENTICATE XOAUTH2 with a bearer token.
    XOAuth2 { user: String, token: OAuthToken },
    /// AUTHENTICATE OAUTHBEARER (RFC 7628) with a bearer token.
    OAuthBearer { user: String, token: OAuthToken },
}

impl Auth {
    /// The login name, for messages (never the secret).
    pub fn user(&self) -> String {
        match self {
            Auth::Master { user, admin, .. } => format!("{user}*{admin}"),
            Auth::Login { user, .. }
            | Auth::Plain { user, .. }
            | Auth::XOAuth2 { user, .. }
            | Auth::OAuthBearer { user, .. } => user.clone(),
        }
    }

    /// Whose mailbox the login opens: the authorization identity of an
    /// admin login, otherwise the user. Checkpoints are keyed by it, so
    /// every user an admin opens has state of its own.
    pub fn mailbox(&self) -> &str {
        match self {
            Auth::Plain {
                authorize_as: Some(owner),
                ..
            } => owner,
            Auth::Master { user, .. }
            | Auth::Login { user, .. }
            | Auth::Plain { user, .. }
            | Auth::XOAuth2 { user, .. }
            | Auth::OAuthBearer { user, .. } => user,
        }
    }
}

/// Which mailbox a `select` opens, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// `\\sent` → `\\Sent`, as RFC 6154 spells the role.
fn special_use_name(role: &str) -> String {
    let name = role.trim_start_matches('\\');
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => format!("\\{}{}", first.to_ascii_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

impl Session {
    /// Logs in. Uses SASL-IR when offered (one round trip less). An OAuth
    /// login whose token source can renew tokens asks it for a new one
    /// and tries once more when the server refuses the token.
    pub async fn login(&mut self, auth: &Auth) -> Result<()> {
        let renews = match auth {
            Auth::XOAuth2 { token, .. } | Auth::OAuthBearer { token, .. } => token.renews(),
            _ => false,
        };
        match self.login_once(auth, false).await {
            Err(e) if renews && e.is_auth_failure() => {
                tracing::info!(server = %self.server(), "the OAuth token was refused; renewing it");
                self.login_once(auth, true).await
            }
            outcome => outcome,
        }
    }

    async fn login_once(&mut self, auth: &Auth, renew: bool) -> Result<()> {
        // After a failed XOAUTH2 or OAUTHBEARER, the server sends its error as
        // a challenge and waits for a dummy answer before its NO.
        let mut error_ack = None;
        let (mechanism, initial) = match auth {
            Auth::Login { password, .. } | Auth::Master { password, .. } => {
                let user = auth.user();
                if self.has("LOGINDISABLED") {
                    return Err(Error::Unsupported {
                        server: self.server().to_string(),
                        what: "LOGIN is disabled (LOGINDISABLED); TLS may be required".into(),
                    });
                }
                let builder = self
                    .builder("LOGIN")
                    .raw("LOGIN ")
                    .astring(&user)
                    .sp()
                    .astring(password.expose());
                let reply = self.run(builder).await?;
                return self.after_login(reply.completion.code).await;
            }
            Auth::Plain {
                user,
                password,
                authorize_as,
            } => {
                let authz = authorize_as.as_deref().unwrap_or("");
                let raw = format!("{authz}\0{user}\0{}", password.expose());
                ("PLAIN", STANDARD.encode(raw))
            }
            Auth::XOAuth2 { user, token } => {
                error_ack = Some("");
                let token = self.oauth_token(token, renew).await?;
                let raw = format!("user={user}\x01auth=Bearer {}\x01\x01", token.expose());
                ("XOAUTH2", STANDARD.encode(raw))
            }
            Auth::OAuthBearer { user, token } => {
                error_ack = Some("AQ=="); // RFC 7628 3.2.3: a single %x01
                let token = self.oauth_token(token, renew).await?;
                let raw = format!("n,a={user},\x01auth=Bearer {}\x01\x01", token.expose());
                ("OAUTHBEARER", STANDARD.encode(raw))
            }
        };
        if !self.has(&format!("AUTH={mechanism}")) {
            return Err(Error::Unsupported {
                server: self.server().to_string(),
                what: format!("the server does not offer AUTH={mechanism}"),
            });
        }
        let mut builder = if self.has("SASL-IR") {
            self.builder("AUTHENTICATE")
                .raw("AUTHENTICATE ")
                .raw(mechanism)
                .sp()
                .raw(&initial)
        } else {
            self.builder("AUTHENTICATE")
                .raw("AUTHENTICATE ")
                .raw(mechanism)
                .await_continuation()
                .raw(&initial)
        };
        if let Some(ack) = error_ack {
            // Sent only if the server asks; a success ends the wait.
            builder = builder.await_continuation().raw(ack);
        }
        let reply = self.run(builder).await?;
        self.after_login(reply.completion.code).await
    }

    async fn oauth_token(&self, token: &OAuthToken, renew: bool) -> Result<Secret> {
        token.get(renew).await.map_err(|e| Error::Token {
            server: self.server().to_string(),
            reason: e.reason,
            transient: e.transient,
        })
    }

    async fn after_login(&mut self, code: Option<ResponseCode>) -> Result<()> {
        match code {
            Some(ResponseCode::Capability(caps)) => self.set_capabilities(caps),
            _ => self.refresh_capabilities().await?,
        }
        Ok(())
    }

    /// Sends ID (RFC 2971) so server logs show who is copying, and
    /// ENABLE QRESYNC where asked for (`want_qresync`), in one round trip.
    pub async fn identify(&mut self) -> Result<()> {
        let enable = self.enable_qresync_command();
        let enabling = enable.is_some();
        let builders: Vec<CommandBuilder> = enable.into_iter().chain(self.id_command()).collect();
        if builders.is_empty() {
            return Ok(());
        }
        let mut replies = self.run_each(builders).await?.into_iter();
        if enabling && let Some(outcome) = replies.next() {
            self.qresync_enabled(&outcome);
        }
        replies.try_for_each(|reply| reply.map(|_| ()))
    }

    fn id_command(&self) -> Option<CommandBuilder> {
        self.has("ID").then(|| {
            self.builder("ID").raw(&format!(
                "ID (\"name\" \"flytt\" \"version\" \"{}\")",
                env!("CARGO_PKG_VERSION")
            ))
        })
    }

    /// Every mailbox (with special-use attributes when the server offers
    /// them) and the names of the subscribed ones, in one round trip.
    pub async fn list_with_subscriptions(&mut self) -> Result<(Vec<ListedMailbox>, Vec<String>)> {
        let lsub = self.builder("LSUB").raw("LSUB \"\" \"*\"");
        let replies = self.run_many(vec![self.list_command(), lsub]).await?;
        let mut mailboxes = Vec::new();
        let mut subscribed = Vec::new();
        for data in replies.into_iter().flat_map(|r| r.untagged) {
            match data {
                Untagged::List(m) => mailboxes.push(m),
                Untagged::Lsub(m) if !m.has_attribute("\\noselect") => subscribed.push(m.name),
                _ => {}
            }
        }
        Ok((mailboxes, subscribed))
    }

    /// STATUS of many mailboxes, pipelined (a round trip per hundred): the
    /// number of messages, UIDNEXT, UIDVALIDITY, and HIGHESTMODSEQ with
    /// CONDSTORE. Enough to leave an empty or unchanged folder unopened. A
    /// mailbox the server refuses is left out of the answer.
    pub async fn statuses(
        &mut self,
        mailboxes: &[String],
    ) -> Result<HashMap<String, FolderStatus>> {
        Ok(self
            .statuses_and_changes(mailboxes, &MailboxChanges::default())
            .await?
            .0)
    }

    /// STATUS of `mailboxes` (as `statuses`), then the CREATEs and
    /// SUBSCRIBEs of `changes` in order, pipelined: one round trip where
    /// there are at most a hundred STATUS commands. Each CREATE and
    /// SUBSCRIBE has its own outcome; only a lost connection is the error.
    pub async fn statuses_and_changes(
        &mut self,
        mailboxes: &[String],
        changes: &MailboxChanges<'_>,
    ) -> Result<(HashMap<String, FolderStatus>, ChangesMade)> {
        let items = if self.has("CONDSTORE") {
            " (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
        } else {
            " (MESSAGES UIDNEXT UIDVALIDITY)"
        };
        let mut statuses = HashMap::new();
        let mut chunks: Vec<&[String]> = mailboxes.chunks(100).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        let mut made = ChangesMade::default();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut builders: Vec<CommandBuilder> = chunk
                .iter()
                .map(|m| self.builder("STATUS").raw("STATUS ").astring(m).raw(items))
                .collect();
            let status_count = builders.len();
            if i == last {
                builders.extend(
                    changes
                        .create
                        .iter()
                        .map(|(mailbox, role)| self.create_command(mailbox, *role)),
                );
                builders.extend(
                    changes
                        .subscribe
                        .iter()
                        .map(|m| self.builder("SUBSCRIBE").raw("SUBSCRIBE ").astring(m)),
                );
            }
            if builders.is_empty() {
                continue;
            }
            let mut replies = self.run_each(builders).await?.into_iter();
            for reply in replies.by_ref().take(status_count).flatten() {
                for data in reply.untagged {
                    if let Untagged::MailboxStatus { mailbox, status } = data {
                        statuses.insert(mailbox, status);
                    }
                }
            }
            made.created = replies
                .by_ref()
                .take(changes.create.len())
                .map(|reply| already_exists_is_ok(reply.map(|_| ())))
                .collect();
            made.subscribed = replies.map(|reply| reply.map(|_| ())).collect();
        }
        Ok((statuses, made))
    }

    /// What a sync asks first, in one round trip: ENABLE QRESYNC (where
    /// asked for, see `want_qresync`), ID (when offered, so server logs
    /// show who is copying), NAMESPACE, LIST and LSUB. Without NAMESPACE,
    /// or without a personal delimiter in its answer, the namespaces take a
    /// round trip or two more (see `namespaces`).
    pub async fn overview(&mut self) -> Result<Overview> {
        let enable = self.enable_qresync_command();
        let enabling = enable.is_some();
        let mut builders: Vec<CommandBuilder> =
            enable.into_iter().chain(self.id_command()).collect();
        let has_namespace = self.has("NAMESPACE");
        if has_namespace {
            builders.push(self.builder("NAMESPACE").raw("NAMESPACE"));
        }
        builders.push(self.list_command());
        builders.push(self.builder("LSUB").raw("LSUB \"\" \"*\""));
        let mut outcomes = self.run_each(builders).await?.into_iter();
        if enabling && let Some(outcome) = outcomes.next() {
            self.qresync_enabled(&outcome);
        }
        let replies: Vec<Reply> = outcomes.collect::<Result<_>>()?;
        let mut mailboxes = Vec::new();
        let mut subscribed = Vec::new();
        let mut namespace_answer = None;
        for data in replies.into_iter().flat_map(|r| r.untagged) {
            match data {
                Untagged::List(m) => mailboxes.push(m),
                Untagged::Lsub(m) if !m.has_attribute("\\noselect") => subscribed.push(m.name),
                Untagged::Namespace {
                    personal,
                    other,
                    shared,
                } => namespace_answer = Some((personal, other, shared)),
                _ => {}
            }
        }
        let namespaces = match namespace_answer {
            Some(answer) => self.namespaces_from(answer).await?,
            None => self.namespaces_without_namespace().await?,
        };
        Ok(Overview {
            namespaces,
            mailboxes,
            subscribed,
        })
    }

    fn list_command(&self) -> CommandBuilder {
        let mut list = self.builder("LIST").raw("LIST \"\" \"*\"");
        if self.has("SPECIAL-USE") && self.has("LIST-EXTENDED") {
            list = list.raw(" RETURN (SPECIAL-USE)");
        }
        list
    }

    /// Every mailbox, with special-use attributes when offered.
    pub async fn list_all(&mut self) -> Result<Vec<ListedMailbox>> {
        Ok(self.list_with_subscriptions().await?.0)
    }

    /// Names of subscribed mailboxes.
    pub async fn subscribed(&mut self) -> Result<Vec<String>> {
        Ok(self.list_with_subscriptions().await?.1)
    }

    /// The personal namespace (prefix and delimiter) and the prefixes of the
    /// namespaces that are not the user's own (other users', shared), which
    /// a mailbox copy must leave alone.
    pub async fn namespaces(&mut self) -> Result<Namespaces> {
        let answer = if self.has("NAMESPACE") {
            let reply = self.run(self.builder("NAMESPACE").raw("NAMESPACE")).await?;
            reply.untagged.into_iter().find_map(|u| match u {
                Untagged::Namespace {
                    personal,
                    other,
                    shared,
                } => Some((personal, other, shared)),
                _ => None,
            })
        } else {
            None
        };
        match answer {
            Some(answer) => self.namespaces_from(answer).await,
            None => self.namespaces_without_namespace().await,
        }
    }

    /// The namespaces from a NAMESPACE answer (personal, other users',
    /// shared); the delimiter asked for when the answer has none.
    async fn namespaces_from(
        &mut self,
        (personal, other, shared): (Vec<Namespace>, Vec<Namespace>, Vec<Namespace>),
    ) -> Result<Namespaces> {
        let foreign = other
            .into_iter()
            .chain(shared)
            .map(|ns| ns.prefix)
            .filter(|prefix| !prefix.is_empty())
            .collect();
        let personal = match personal.into_iter().next() {
            Some(ns) if ns.delimiter.is_some() => ns,
            Some(ns) => Namespace {
                delimiter: self.delimiter().await?,
                ..ns
            },
            None => Namespace {
                prefix: String::new(),
                delimiter: self.delimiter().await?,
            },
        };
        Ok(Namespaces { personal, foreign })
    }

    /// Without NAMESPACE: the delimiter from `LIST "" ""`, and the prefix
    /// `INBOX<delimiter>` when every folder but INBOX is under INBOX (as on
    /// servers whose folders cannot live beside it).
    async fn namespaces_without_namespace(&mut self) -> Result<Namespaces> {
        let delimiter = self.delimiter().await?;
        let mut prefix = String::new();
        if let Some(d) = delimiter {
            let under_inbox = format!("INBOX{d}");
            let all = self.list_all().await?;
            let others: Vec<&ListedMailbox> = all
                .iter()
                .filter(|m| !m.name.eq_ignore_ascii_case("INBOX"))
                .collect();
            if !others.is_empty()
                && others.iter().all(|m| {
                    m.name
                        .get(..under_inbox.len())
                        .is_some_and(|h| h.eq_ignore_ascii_case(&under_inbox))
                })
            {
                prefix = under_inbox;
            }
        }
        Ok(Namespaces {
            personal: Namespace { prefix, delimiter },
            foreign: Vec::new(),
        })
    }

    /// The hierarchy delimiter (from `LIST "" ""`).
    pub async fn delimiter(&mut self) -> Result<Option<char>> {
        let reply = self.run(self.builder("LIST").raw("LIST \"\" \"\"")).await?;
        Ok(reply.untagged.into_iter().find_map(|u| match u {
            Untagged::List(m) => m.delimiter,
            _ => None,
        }))
    }

    /// SELECT or EXAMINE; with CONDSTORE when the server offers it.
    pub async fn select(&mut self, mailbox: &str, access: Access) -> Result<MailboxStatus> {
        let reply = self.run(self.select_command(mailbox, access)).await?;
        Ok(mailbox_status(reply, access))
    }

    /// SELECT (or EXAMINE) and a `UID FETCH` in the selected mailbox, in
    /// one round trip. The FETCH has its own outcome: after a refused
    /// SELECT the server refuses it too (no mailbox is selected then).
    pub async fn select_and_fetch(
        &mut self,
        mailbox: &str,
        access: Access,
        fetch: &FetchRequest<'_>,
    ) -> Result<(MailboxStatus, Result<Fetched>)> {
        let vanished_asked = fetch.vanished && fetch.changed_since.is_some() && self.qresync();
        let builders = vec![
            self.select_command(mailbox, access),
            self.fetch_command(fetch),
        ];
        let mut replies = self.run_each(builders).await?.into_iter();
        let (Some(selected), Some(fetched)) = (replies.next(), replies.next()) else {
            return Err(Error::Protocol {
                server: self.server().to_string(),
                detail: "two commands sent, fewer completions read".into(),
            });
        };
        Ok((
            mailbox_status(selected?, access),
            fetched.map(|reply| self::fetched(reply, vanished_asked)),
        ))
    }

    fn select_command(&self, mailbox: &str, access: Access) -> CommandBuilder {
        let (name, verb) = match access {
            Access::ReadOnly => ("EXAMINE", "EXAMINE "),
            Access::ReadWrite => ("SELECT", "SELECT "),
        };
        let mut builder = self.builder(name).raw(verb).astring(mailbox);
        if self.has("CONDSTORE") {
            builder = builder.raw(" (CONDSTORE)");
        }
        builder
    }

    /// DELETE of one mailbox (its children, where it has any, stay or go as
    /// the server decides: callers delete only mailboxes without them).
    pub async fn delete(&mut self, mailbox: &str) -> Result<()> {
        let builder = self.builder("DELETE").raw("DELETE ").astring(mailbox);
        self.run(builder).await.map(|_| ())
    }

    /// CREATE; a mailbox that already exists is not an error.
    pub async fn create(&mut self, mailbox: &str) -> Result<()> {
        self.create_with_role(mailbox, None).await
    }

    /// CREATE; with a special-use `role` (`\\sent`) the folder is created
    /// with it where the server offers CREATE-SPECIAL-USE (RFC 6154).
    pub async fn create_with_role(&mut self, mailbox: &str, role: Option<&str>) -> Result<()> {
        let builder = self.create_command(mailbox, role);
        already_exists_is_ok(self.run(builder).await.map(|_| ()))
    }

    fn create_command(&self, mailbox: &str, role: Option<&str>) -> CommandBuilder {
        let mut builder = self.builder("CREATE").raw("CREATE ").astring(mailbox);
        if let Some(role) = role
            && self.has("CREATE-SPECIAL-USE")
        {
            builder = builder.raw(&format!(" (USE ({}))", special_use_name(role)));
        }
        builder
    }

    /// The quota roots of `mailbox` and their resources (RFC 9208
    /// GETQUOTAROOT); empty where the server has no QUOTA extension or no
    /// quota for the mailbox.
    pub async fn quota_root(&mut self, mailbox: &str) -> Result<Vec<Quota>> {
        if !self.has("QUOTA") {
            return Ok(Vec::new());
        }
        let builder = self
            .builder("GETQUOTAROOT")
            .raw("GETQUOTAROOT ")
            .astring(mailbox);
        let reply = self.run(builder).await?;
        Ok(reply
            .untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::Quota(quota) => Some(quota),
                _ => None,
            })
            .collect())
    }

    pub async fn subscribe(&mut self, mailbox: &str) -> Result<()> {
        let builder = self.builder("SUBSCRIBE").raw("SUBSCRIBE ").astring(mailbox);
        self.run(builder).await.map(|_| ())
    }

    /// Every UID in the selected mailbox.
    pub async fn uid_search_all(&mut self) -> Result<Vec<Uid>> {
        self.uid_search("ALL").await
    }

    /// Which of `uids` (a UID set) the selected mailbox still holds.
    pub async fn uid_search_among(&mut self, uids: &str) -> Result<Vec<Uid>> {
        self.uid_search(&format!("UID {uids}")).await
    }

    async fn uid_search(&mut self, criteria: &str) -> Result<Vec<Uid>> {
        let reply = self
            .run(self.builder("UID SEARCH").raw("UID SEARCH ").raw(criteria))
            .await?;
        let mut uids = Vec::new();
        for u in reply.untagged {
            if let Untagged::Search(found) = u {
                uids.extend(found);
            }
        }
        uids.sort_unstable();
        Ok(uids)
    }

    /// `UID FETCH set (items)`, collecting the answers.
    pub async fn uid_fetch(&mut self, uids: &str, items: &str) -> Result<Vec<FetchedMessage>> {
        self.fetch(&FetchRequest {
            uids,
            items,
            changed_since: None,
            vanished: false,
        })
        .await
    }

    /// `UID FETCH set (items) (CHANGEDSINCE modseq)` (CONDSTORE): only
    /// messages whose metadata changed after `modseq`.
    pub async fn uid_fetch_changed_since(
        &mut self,
        uids: &str,
        items: &str,
        modseq: ModSeq,
    ) -> Result<Vec<FetchedMessage>> {
        self.fetch(&FetchRequest {
            uids,
            items,
            changed_since: Some(modseq),
            vanished: false,
        })
        .await
    }

    pub async fn fetch(&mut self, request: &FetchRequest<'_>) -> Result<Vec<FetchedMessage>> {
        let reply = self.run(self.fetch_command(request)).await?;
        Ok(fetched_messages(reply))
    }

    fn fetch_command(&self, request: &FetchRequest<'_>) -> CommandBuilder {
        let builder = self
            .builder("UID FETCH")
            .raw("UID FETCH ")
            .raw(request.uids)
            .raw(" (")
            .raw(request.items)
            .raw(")");
        match (request.changed_since, request.vanished && self.qresync()) {
            (Some(modseq), true) => builder.raw(&format!(" (CHANGEDSINCE {modseq} VANISHED)")),
            (Some(modseq), false) => builder.raw(&format!(" (CHANGEDSINCE {modseq})")),
            (None, _) => builder,
        }
    }

    /// Adds (`+`) or removes (`-`) flags on the given UIDs, silently.
    pub async fn uid_store(&mut self, uids: &[Uid], add: bool, flags: &[Flag]) -> Result<()> {
        if uids.is_empty() || flags.is_empty() {
            return Ok(());
        }
        let builder = self
            .builder("UID STORE")
            .raw("UID STORE ")
            .raw(&uid_set(uids))
            .raw(if add {
                " +FLAGS.SILENT "
            } else {
                " -FLAGS.SILENT "
            })
            .flags(flags);
        self.run(builder).await.map(|_| ())
    }

    /// `UID EXPUNGE set` (UIDPLUS, RFC 4315): removes exactly these
    /// messages, if they are marked `\Deleted`, and no other that is.
    pub async fn uid_expunge(&mut self, uids: &[Uid]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let builder = self
            .builder("UID EXPUNGE")
            .raw("UID EXPUNGE ")
            .raw(&uid_set(uids));
        self.run(builder).await.map(|_| ())
    }

    /// LOGOUT, without waiting for the answer (a round trip of nothing):
    /// the command is written out and the connection closed.
    pub async fn logout(mut self) {
        let builder = self.builder("LOGOUT").raw("LOGOUT");
        if self.send(builder).await.is_ok() {
            self.finish_writing().await;
        }
    }
}

/// A `UID FETCH`: which UIDs, which items, and with CONDSTORE only the
/// messages changed after a mod-sequence.
#[derive(Clone, Copy, Debug)]
pub struct FetchRequest<'a> {
    pub uids: &'a str,
    pub items: &'a str,
    pub changed_since: Option<ModSeq>,
    /// With `changed_since` and QRESYNC on (`Session::want_qresync`): the
    /// answer also names the messages expunged since (VANISHED).
    pub vanished: bool,
}

/// A FETCH's answer.
#[derive(Debug, Default)]
pub struct Fetched {
    pub messages: Vec<FetchedMessage>,
    /// The UIDs expunged since the request's mod-sequence, where it asked
    /// for them and QRESYNC was on; `None` otherwise.
    pub vanished: Option<UidRanges>,
}

fn fetched(reply: Reply, vanished_asked: bool) -> Fetched {
    let mut vanished = vanished_asked.then(UidRanges::default);
    let mut messages = Vec::new();
    for data in reply.untagged {
        match data {
            Untagged::Fetch(m) if m.uid.is_some() => messages.push(m),
            Untagged::Vanished {
                earlier: true,
                uids,
            } => {
                if let Some(vanished) = &mut vanished {
                    vanished.extend(uids);
                }
            }
            _ => {}
        }
    }
    Fetched { messages, vanished }
}

fn fetched_messages(reply: Reply) -> Vec<FetchedMessage> {
    reply
        .untagged
        .into_iter()
        .filter_map(|u| match u {
            Untagged::Fetch(m) if m.uid.is_some() => Some(m),
            _ => None,
        })
        .collect()
}

/// What a SELECT or EXAMINE answered about the mailbox.
fn mailbox_status(reply: Reply, access: Access) -> MailboxStatus {
    let mut status = MailboxStatus {
        read_only: access == Access::ReadOnly,
        ..MailboxStatus::default()
    };
    let codes = reply
        .untagged
        .into_iter()
        .filter_map(|u| match u {
            Untagged::Exists(n) => {
                status.exists = n;
                None
            }
            Untagged::Status { code, .. } => code,
            _ => None,
        })
        .chain(reply.completion.code);
    for code in codes {
        match code {
            ResponseCode::UidValidity(v) => status.uid_validity = Some(v),
            ResponseCode::UidNext(v) => status.uid_next = Some(v),
            ResponseCode::HighestModSeq(v) => status.highest_modseq = Some(v),
            ResponseCode::PermanentFlags {
                flags,
                keywords_allowed,
            } => {
                status.permanent_flags = Some(flags);
                status.keywords_allowed = keywords_allowed;
            }
            ResponseCode::ReadOnly => status.read_only = true,
            _ => {}
        }
    }
    status
}

/// Folders to create (with their special-use roles) and to subscribe to.
#[derive(Clone, Copy, Debug, Default)]
pub struct MailboxChanges<'a> {
    pub create: &'a [(&'a str, Option<&'a str>)],
    pub subscribe: &'a [&'a str],
}

/// Each CREATE's and SUBSCRIBE's outcome, in the order asked.
#[derive(Debug, Default)]
pub struct ChangesMade {
    pub created: Vec<Result<()>>,
    pub subscribed: Vec<Result<()>>,
}

/// A CREATE answered `[ALREADYEXISTS]` leaves the mailbox as wanted.
fn already_exists_is_ok(result: Result<()>) -> Result<()> {
    match result {
        Err(Error::Rejected {
            code: Some(code), ..
        }) if code.eq_ignore_ascii_case("ALREADYEXISTS") => Ok(()),
        other => other,
    }
}
