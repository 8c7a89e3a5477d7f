//! Reads a batch's CSV file into validated users.
//!
//! What an administrator's file may look like: written by a text editor or
//! by Excel, UTF-8 with or without a byte-order mark, CRLF or LF, quoted
//! values, and a semicolon instead of a comma where Excel's locale uses the
//! comma as decimal separator (much of Europe, Norway included). Header
//! names match case-insensitively. An empty cell means "the batch's value";
//! a filled one overrides it for that user.
//!
//! Validation never stops at the first problem: the administrator gets every
//! error, each with the line it is on, and no batch exists until the file is
//! clean. Error messages never quote a password.

use std::collections::HashMap;
use std::fmt;

use crate::folder_mapping::FolderMapping;
use crate::size::parse_size;

/// The kinds of migration batch (SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchType {
    Imap,
    Staged,
    Onboarding,
    Offboarding,
}

/// A text that names no batch type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no such batch type: {0:?}")]
pub struct UnknownBatchType(pub String);

impl std::str::FromStr for BatchType {
    type Err = UnknownBatchType;

    fn from_str(text: &str) -> Result<Self, UnknownBatchType> {
        BatchType::parse(text).ok_or_else(|| UnknownBatchType(text.to_string()))
    }
}

impl BatchType {
    pub const ALL: [BatchType; 4] = [
        BatchType::Imap,
        BatchType::Staged,
        BatchType::Onboarding,
        BatchType::Offboarding,
    ];

    /// The type named as `name` spells it.
    pub fn parse(text: &str) -> Option<BatchType> {
        BatchType::ALL.into_iter().find(|t| t.name() == text)
    }

    pub fn name(self) -> &'static str {
        match self {
            BatchType::Imap => "imap",
            BatchType::Staged => "staged",
            BatchType::Onboarding => "onboarding",
            BatchType::Offboarding => "offboarding",
        }
    }

    /// The most users one CSV file may name (SPEC §1.2: 2,000 for staged,
    /// 50,000 for IMAP; remote moves take the IMAP limit).
    pub fn max_rows(self) -> usize {
        match self {
            BatchType::Staged => 2_000,
            BatchType::Imap | BatchType::Onboarding | BatchType::Offboarding => 50_000,
        }
    }

    /// The columns a file of this type must have.
    pub fn required(self) -> &'static [Column] {
        match self {
            BatchType::Imap => &[Column::EmailAddress, Column::UserName, Column::Password],
            BatchType::Staged | BatchType::Onboarding | BatchType::Offboarding => {
                &[Column::EmailAddress]
            }
        }
    }

    /// Every column a file of this type may have.
    pub fn allowed(self) -> &'static [Column] {
        use Column::*;
        match self {
            BatchType::Imap => &[
                EmailAddress,
                UserName,
                Password,
                TargetUserName,
                TargetPassword,
                MailboxType,
                BadItemLimit,
                LargeItemLimit,
                DeletionSync,
                FolderMapping,
                RefreshToken,
            ],
            BatchType::Staged => &[
                EmailAddress,
                Password,
                ForceChangePassword,
                BadItemLimit,
                LargeItemLimit,
                DeletionSync,
                FolderMapping,
            ],
            BatchType::Onboarding | BatchType::Offboarding => &[
                EmailAddress,
                MailboxType,
                BadItemLimit,
                LargeItemLimit,
                DeletionSync,
                FolderMapping,
                RefreshToken,
            ],
        }
    }
}

/// A CSV column flytt knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Column {
    EmailAddress,
    UserName,
    Password,
    ForceChangePassword,
    TargetUserName,
    TargetPassword,
    MailboxType,
    BadItemLimit,
    LargeItemLimit,
    DeletionSync,
    FolderMapping,
    /// The source mailbox's OAuth refresh token (a secret, like Password).
    RefreshToken,
}

impl Column {
    const ALL: [Column; 12] = [
        Column::EmailAddress,
        Column::UserName,
        Column::Password,
        Column::ForceChangePassword,
        Column::TargetUserName,
        Column::TargetPassword,
        Column::MailboxType,
        Column::BadItemLimit,
        Column::LargeItemLimit,
        Column::DeletionSync,
        Column::FolderMapping,
        Column::RefreshToken,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Column::EmailAddress => "EmailAddress",
            Column::UserName => "UserName",
            Column::Password => "Password",
            Column::ForceChangePassword => "ForceChangePassword",
            Column::TargetUserName => "TargetUserName",
            Column::TargetPassword => "TargetPassword",
            Column::MailboxType => "MailboxType",
            Column::BadItemLimit => "BadItemLimit",
            Column::LargeItemLimit => "LargeItemLimit",
            Column::DeletionSync => "DeletionSync",
            Column::FolderMapping => "FolderMapping",
            Column::RefreshToken => "RefreshToken",
        }
    }

    fn from_header(header: &str) -> Option<Column> {
        let header = header.trim();
        Column::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(header))
    }
}

/// Which part of the mailbox moves (SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MailboxType {
    PrimaryOnly,
    ArchiveOnly,
    PrimaryAndArchive,
}

impl MailboxType {
    pub fn parse(text: &str) -> Option<MailboxType> {
        [
            MailboxType::PrimaryOnly,
            MailboxType::ArchiveOnly,
            MailboxType::PrimaryAndArchive,
        ]
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(text.trim()))
    }

    pub fn name(self) -> &'static str {
        match self {
            MailboxType::PrimaryOnly => "PrimaryOnly",
            MailboxType::ArchiveOnly => "ArchiveOnly",
            MailboxType::PrimaryAndArchive => "PrimaryAndArchive",
        }
    }
}

/// How many bad items a user may have before failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BadItemLimit {
    Count(u32),
    Unlimited,
}

impl BadItemLimit {
    pub fn parse(text: &str) -> Option<BadItemLimit> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("unlimited") {
            return Some(BadItemLimit::Unlimited);
        }
        text.parse().ok().map(BadItemLimit::Count)
    }
}

/// A password from the file. No `Display`; `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The password itself, for the one place that stores or sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// One valid row. `None` means "use the batch's value".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvUser {
    /// The line the row starts on (the header is line 1).
    pub line: u64,
    pub email: String,
    pub user_name: Option<String>,
    pub password: Option<Password>,
    pub force_change_password: Option<bool>,
    pub target_user_name: Option<String>,
    pub target_password: Option<Password>,
    pub mailbox_type: Option<MailboxType>,
    pub bad_item_limit: Option<BadItemLimit>,
    pub large_item_limit: Option<u64>,
    pub deletion_sync: Option<bool>,
    /// The row's folder mapping rules, tried before the batch's.
    pub folder_mapping: Option<FolderMapping>,
    /// The source's OAuth refresh token.
    pub refresh_token: Option<Password>,
}

/// One problem in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvError {
    pub line: u64,
    pub message: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const MIN_PASSWORD: usize = 8;

/// Reads and validates a CSV file for a batch of `batch_type`.
/// `active_batch_of(email)` names the active batch that already holds a
/// user, if any. Returns the users, or every problem found.
pub fn parse_users(
    bytes: &[u8],
    batch_type: BatchType,
    active_batch_of: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<CsvUser>, Vec<CsvError>> {
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        return Err(vec![CsvError {
            line,
            message: "the file is not UTF-8 (save it as \"CSV UTF-8\")".into(),
        }]);
    }
    let mut errors = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(bytes))
        .flexible(true)
        .has_headers(true)
        .from_reader(bytes);

    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(e) => {
            return Err(vec![CsvError {
                line: 1,
                message: format!("cannot read the header: {e}"),
            }]);
        }
    };
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(vec![CsvError {
            line: 1,
            message: "the file is empty: the first line must name the columns".into(),
        }]);
    }
    let columns = header_columns(&headers, batch_type, &mut errors);

    let mut users = Vec::new();
    let mut first_line_of: HashMap<String, u64> = HashMap::new();
    let mut rows = 0usize;
    let mut record = csv::StringRecord::new();
    let mut lines = LineCounter::new(bytes);
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                errors.push(CsvError {
                    line: e.position().map_or(line, |p| p.line()),
                    message: format!("cannot read the row: {e}"),
                });
                continue;
            }
        }
        let line = record.position().map_or(line, |p| lines.line_at(p.byte()));
        if record.iter().all(|v| v.trim().is_empty()) {
            continue; // Excel's trailing ",,," lines
        }
        rows += 1;
        if rows == batch_type.max_rows() + 1 {
            errors.push(CsvError {
                line,
                message: format!(
                    "too many users: a {} batch takes at most {} (split the file into several batches)",
                    batch_type.name(),
                    batch_type.max_rows()
                ),
            });
        }
        if record.len() != headers.len() {
            errors.push(CsvError {
                line,
                message: format!(
                    "has {} values but the header has {} columns",
                    record.len(),
                    headers.len()
                ),
            });
            continue;
        }
        let (user, row_ok) = parse_row(&record, &columns, batch_type, line, &mut errors);
        // A row with other problems still claims its address.
        if user.email.is_empty() {
            continue;
        }
        let key = user.email.to_lowercase();
        if let Some(first) = first_line_of.get(&key) {
            errors.push(CsvError {
                line,
                message: format!("{} is already on line {first}", user.email),
            });
            continue;
        }
        first_line_of.insert(key, line);
        if let Some(batch) = active_batch_of(&user.email) {
            errors.push(CsvError {
                line,
                message: format!("{} is already in the active batch {batch}", user.email),
            });
            continue;
        }
        if row_ok {
            users.push(user);
        }
    }
    if rows == 0 && errors.is_empty() {
        errors.push(CsvError {
            line: 2,
            message: "the file names no users".into(),
        });
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(errors)
    }
}

/// Line numbers from byte offsets. The csv crate's own count is one short
/// for CRLF files (it starts a record at the `\n` of the previous `\r\n`),
/// so lines are counted here. Offsets only grow, so counting is incremental.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The line a record starting at `offset` is on (line breaks before
    /// its first character are skipped).
    fn line_at(&mut self, offset: u64) -> u64 {
        let mut start = usize::try_from(offset)
            .unwrap_or(self.bytes.len())
            .min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= self.offset {
            self.line += self.bytes[self.offset..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.offset = start;
        }
        self.line
    }
}

/// A semicolon-separated file (Excel in European locales) has more
/// semicolons than commas in its header line.
fn delimiter(bytes: &[u8]) -> u8 {
    let header = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let count = |c: u8| header.iter().filter(|&&b| b == c).count();
    if count(b';') > count(b',') {
        b';'
    } else {
        b','
    }
}

/// Maps header positions to columns; reports unknown, repeated and missing ones.
fn header_columns(
    headers: &csv::StringRecord,
    batch_type: BatchType,
    errors: &mut Vec<CsvError>,
) -> Vec<Option<Column>> {
    let allowed = batch_type.allowed();
    let allowed_names = allowed
        .iter()
        .map(|c| c.name())
        .collect::<Vec<_>>()
        .join(", ");
    let mut columns = Vec::new();
    for header in headers.iter() {
        let column = Column::from_header(header).filter(|c| allowed.contains(c));
        match column {
            None => errors.push(CsvError {
                line: 1,
                message: format!(
                    "unknown column {:?}; a {} batch takes: {allowed_names}",
                    header.trim(),
                    batch_type.name()
                ),
            }),
            Some(c) if columns.contains(&Some(c)) => errors.push(CsvError {
                line: 1,
                message: format!("column {} appears twice", c.name()),
            }),
            Some(_) => {}
        }
        columns.push(column);
    }
    for required in batch_type.required() {
        if !columns.contains(&Some(*required)) {
            errors.push(CsvError {
                line: 1,
                message: format!(
                    "missing column {} (required for a {} batch)",
                    required.name(),
                    batch_type.name()
                ),
            });
        }
    }
    columns
}

/// The row as far as it could be read, and whether it had no problem.
fn parse_row(
    record: &csv::StringRecord,
    columns: &[Option<Column>],
    batch_type: BatchType,
    line: u64,
    errors: &mut Vec<CsvError>,
) -> (CsvUser, bool) {
    let errors_before = errors.len();
    let mut error = |message: String| errors.push(CsvError { line, message });
    let mut user = CsvUser {
        line,
        email: String::new(),
        user_name: None,
        password: None,
        force_change_password: None,
        target_user_name: None,
        target_password: None,
        mailbox_type: None,
        bad_item_limit: None,
        large_item_limit: None,
        deletion_sync: None,
        folder_mapping: None,
        refresh_token: None,
    };
    for (value, column) in record.iter().zip(columns) {
        let Some(column) = column else { continue };
        // Passwords are taken as written; everything else is trimmed.
        let trimmed = value.trim();
        let is_password = matches!(column, Column::Password | Column::TargetPassword);
        let empty = if is_password {
            value.is_empty()
        } else {
            trimmed.is_empty()
        };
        if empty {
            if batch_type.required().contains(column) {
                error(format!("{} is empty", column.name()));
            }
            continue;
        }
        match column {
            Column::EmailAddress => {
                if is_valid_address(trimmed) {
                    user.email = trimmed.to_string();
                } else {
                    error(format!("{trimmed:?} is not a valid email address"));
                }
            }
            Column::UserName => user.user_name = Some(trimmed.to_string()),
            Column::TargetUserName => user.target_user_name = Some(trimmed.to_string()),
            Column::Password | Column::TargetPassword => {
                // Only a staged batch's Password is a new password with
                // rules of its own; an IMAP batch's passwords are the ones
                // the users have today, whatever they are.
                let new_password = batch_type == BatchType::Staged && *column == Column::Password;
                if new_password && value.chars().count() < MIN_PASSWORD {
                    error(format!(
                        "{} is shorter than {MIN_PASSWORD} characters",
                        column.name()
                    ));
                } else if *column == Column::Password {
                    user.password = Some(Password(value.to_string()));
                } else {
                    user.target_password = Some(Password(value.to_string()));
                }
            }
            Column::ForceChangePassword | Column::DeletionSync => {
                let value = if trimmed.eq_ignore_ascii_case("true") {
                    true
                } else if trimmed.eq_ignore_ascii_case("false") {
                    false
                } else {
                    error(format!(
                        "{} must be True or False, not {trimmed:?}",
                        column.name()
                    ));
                    continue;
                };
                if *column == Column::DeletionSync {
                    user.deletion_sync = Some(value);
                } else {
                    user.force_change_password = Some(value);
                }
            }
            Column::MailboxType => match MailboxType::parse(trimmed) {
                Some(t) => user.mailbox_type = Some(t),
                None => error(format!(
                    "MailboxType must be PrimaryOnly, ArchiveOnly or PrimaryAndArchive, not {trimmed:?}"
                )),
            },
            Column::BadItemLimit => match BadItemLimit::parse(trimmed) {
                Some(limit) => user.bad_item_limit = Some(limit),
                None => error(format!(
                    "BadItemLimit must be a whole number or Unlimited, not {trimmed:?}"
                )),
            },
            Column::LargeItemLimit => match parse_size(trimmed) {
                Ok(size) => user.large_item_limit = Some(size),
                Err(e) => error(format!("LargeItemLimit: {e}")),
            },
            // A token has no spaces: trimming only takes what a
            // spreadsheet added.
            Column::RefreshToken => user.refresh_token = Some(Password(trimmed.to_string())),
            Column::FolderMapping => match FolderMapping::parse(trimmed) {
                Ok(rules) => user.folder_mapping = Some(rules),
                Err(e) => error(e.to_string()),
            },
        }
    }
    let ok = errors.len() == errors_before;
    (user, ok)
}

/// A plausible SMTP address: one `@`, a local part, a dotted domain, no
/// spaces or control characters, at most 254 characters.
fn is_valid_address(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    address.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && address
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\"\\".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    fn errors(csv: &str, batch_type: BatchType) -> Vec<String> {
        match parse_users(csv.as_bytes(), batch_type, &none) {
            Ok(users) => panic!("expected errors, got {} users", users.len()),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn users(csv: &[u8], batch_type: BatchType) -> Vec<CsvUser> {
        parse_users(csv, batch_type, &none).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn the_seeds_override_example_works_as_written() {
        let csv = "EmailAddress,MailboxType\nuser1@contoso.com,\nuser2@contoso.com,\nuser3@cloud.contoso.com,PrimaryAndArchive\nuser4@cloud.contoso.com,PrimaryAndArchive\n";
        let users = users(csv.as_bytes(), BatchType::Onboarding);
        let types: Vec<Option<MailboxType>> = users.iter().map(|u| u.mailbox_type).collect();
        assert_eq!(
            types,
            vec![
                None,
                None,
                Some(MailboxType::PrimaryAndArchive),
                Some(MailboxType::PrimaryAndArchive)
            ]
        );
        assert_eq!(users[2].line, 4);
    }

    #[test]
    fn excel_files_bom_semicolons_crlf_quotes_case() {
        let csv = b"\xEF\xBB\xBFemailaddress;USERNAME;Password\r\n\"kari@example.org\";kari;\"pass;word 1\"\r\nola@example.org;\"ola \"\"o\"\"\";passord123\r\n;;\r\n";
        let users = users(csv, BatchType::Imap);
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].email, "kari@example.org");
        assert_eq!(
            users[0].password.as_ref().map(Password::expose),
            Some("pass;word 1")
        );
        assert_eq!(users[1].user_name.as_deref(), Some("ola \"o\""));
        assert_eq!(users[1].line, 3);
    }

    #[test]
    fn every_rule_reports_its_line() {
        let csv = "EmailAddress,Password,ForceChangePassword,Colour\n\
                   kari@example.org,kort,Maybe,blue\n\
                   not-an-address,langtpassord,True,red\n\
                   Kari@Example.org,langtpassord,false,green\n\
                   ola@example.org,langtpassord\n";
        assert_eq!(
            errors(csv, BatchType::Staged),
            vec![
                "line 1: unknown column \"Colour\"; a staged batch takes: EmailAddress, Password, ForceChangePassword, BadItemLimit, LargeItemLimit, DeletionSync, FolderMapping",
                "line 2: Password is shorter than 8 characters",
                "line 2: ForceChangePassword must be True or False, not \"Maybe\"",
                "line 3: \"not-an-address\" is not a valid email address",
                "line 4: Kari@Example.org is already on line 2",
                "line 5: has 2 values but the header has 4 columns",
            ]
        );
    }

    /// DeletionSync per row: True or False, any case; empty takes the
    /// batch's; anything else is an error on its line.
    #[test]
    fn deletion_sync_is_a_per_row_choice() {
        let csv = "EmailAddress,DeletionSync\n\
                   kari@example.org,TRUE\n\
                   ola@example.org,false\n\
                   per@example.org,\n";
        let users =
            parse_users(csv.as_bytes(), BatchType::Onboarding, &|_: &str| None).expect("valid");
        let chosen: Vec<Option<bool>> = users.iter().map(|u| u.deletion_sync).collect();
        assert_eq!(chosen, vec![Some(true), Some(false), None]);
        assert_eq!(
            errors(
                "EmailAddress,DeletionSync\nkari@example.org,yes\n",
                BatchType::Staged
            ),
            vec!["line 2: DeletionSync must be True or False, not \"yes\""]
        );
    }

    /// FolderMapping per row: rules as for the batch (quoted in the CSV
    /// cell as any value with commas or quotes is); a rule that does not
    /// read is an error on its line.
    #[test]
    fn folder_mapping_is_read_per_row() {
        let csv = "EmailAddress,FolderMapping\n\
               kari@example.org,\"\"\"Sendte elementer\"\" -> Gammelt/Sendt; Arkiv/* -> Archive/*\"\n\
               ola@example.org,\n";
        let users =
            parse_users(csv.as_bytes(), BatchType::Onboarding, &|_: &str| None).expect("valid");
        let rules: Vec<Vec<String>> = users
            .iter()
            .map(|u| {
                u.folder_mapping
                    .as_ref()
                    .map(|m| m.rules())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            rules,
            vec![
                vec![
                    "\"Sendte elementer\" -> \"Gammelt/Sendt\"".to_string(),
                    "\"Arkiv/*\" -> \"Archive/*\"".to_string()
                ],
                vec![]
            ]
        );
        assert_eq!(
            errors(
                "EmailAddress,FolderMapping\nkari@example.org,Arkiv/* -> X/**\n",
                BatchType::Onboarding
            ),
            vec![
                "line 2: folder mapping \"Arkiv/* -> X/**\": the target's wildcards must be the source's, in the same order (* for *, ** for **), or none"
            ]
        );
    }

    #[test]
    fn an_imap_batch_takes_any_current_password() {
        let csv = "EmailAddress,UserName,Password\n\
                   kari@example.org,kari,kort\n\
                   ola@example.org,ola,x\n\
                   per@example.org,per,\n";
        assert_eq!(
            errors(csv, BatchType::Imap),
            vec!["line 4: Password is empty"]
        );
    }

    #[test]
    fn duplicates_and_users_in_other_batches() {
        let csv = "EmailAddress\nkari@example.org\nola@example.org\nKARI@example.org\n";
        let in_batch = |email: &str| (email == "ola@example.org").then(|| "Bølge 1".to_string());
        let errors: Vec<String> = parse_users(csv.as_bytes(), BatchType::Staged, &in_batch)
            .expect_err("errors")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec![
                "line 3: ola@example.org is already in the active batch Bølge 1",
                "line 4: KARI@example.org is already on line 2",
            ]
        );
    }

    #[test]
    fn missing_required_columns_and_values() {
        assert_eq!(
            errors(
                "EmailAddress,Password\nkari@example.org,passord123\n",
                BatchType::Imap
            ),
            vec!["line 1: missing column UserName (required for a imap batch)"]
        );
        assert_eq!(
            errors(
                "EmailAddress,UserName,Password\nkari@example.org,,passord123\n",
                BatchType::Imap
            ),
            vec!["line 2: UserName is empty"]
        );
    }

    #[test]
    fn overrides_are_checked() {
        let csv = "EmailAddress,UserName,Password,BadItemLimit,LargeItemLimit,MailboxType\n\
                   a@example.org,a,passord123,10,35MB,\n\
                   b@example.org,b,passord123,Unlimited,,archiveonly\n\
                   c@example.org,c,passord123,-1,huge,Everything\n";
        assert_eq!(
            errors(csv, BatchType::Imap),
            vec![
                "line 4: BadItemLimit must be a whole number or Unlimited, not \"-1\"",
                "line 4: LargeItemLimit: \"huge\" is not a size (e.g. 35MB, 500KB, 1048576)",
                "line 4: MailboxType must be PrimaryOnly, ArchiveOnly or PrimaryAndArchive, not \"Everything\"",
            ]
        );
        let ok = users(
            b"EmailAddress,UserName,Password,BadItemLimit,LargeItemLimit\na@example.org,a,passord123,10,35MB\n",
            BatchType::Imap,
        );
        assert_eq!(ok[0].bad_item_limit, Some(BadItemLimit::Count(10)));
        assert_eq!(ok[0].large_item_limit, Some(35 << 20));
    }

    #[test]
    fn row_limits_per_type() {
        let mut csv = String::from("EmailAddress\n");
        for i in 0..2_001 {
            csv.push_str(&format!("user{i}@example.org\n"));
        }
        assert_eq!(
            errors(&csv, BatchType::Staged),
            vec![
                "line 2002: too many users: a staged batch takes at most 2000 (split the file into several batches)"
            ]
        );
        let mut csv = String::from("EmailAddress,UserName,Password\n");
        for i in 0..50_001 {
            csv.push_str(&format!("user{i}@example.org,user{i},passord123\n"));
        }
        assert_eq!(
            errors(&csv, BatchType::Imap),
            vec![
                "line 50002: too many users: a imap batch takes at most 50000 (split the file into several batches)"
            ]
        );
        assert_eq!(
            users(
                csv.split_once("user50000@").map_or("", |p| p.0).as_bytes(),
                BatchType::Imap
            )
            .len(),
            50_000
        );
    }

    #[test]
    fn empty_and_broken_files() {
        assert_eq!(
            errors("", BatchType::Imap),
            vec!["line 1: the file is empty: the first line must name the columns"]
        );
        assert_eq!(
            errors("EmailAddress\n", BatchType::Staged),
            vec!["line 2: the file names no users"]
        );
        assert_eq!(
            parse_users(
                b"EmailAddress\nk\xe5re@example.org\n",
                BatchType::Staged,
                &none
            )
            .expect_err("latin-1")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
            vec!["line 2: the file is not UTF-8 (save it as \"CSV UTF-8\")"]
        );
    }

    #[test]
    fn errors_never_show_passwords() {
        let csv = "EmailAddress,Password\nkari@example.org,hemmel\n";
        let all = errors(csv, BatchType::Staged).join("\n");
        assert!(!all.contains("hemmel"), "{all}");
        let ok = users(
            b"EmailAddress,UserName,Password\nkari@example.org,kari,hemmelig1\n",
            BatchType::Imap,
        );
        assert!(!format!("{ok:?}").contains("hemmelig1"));
    }
}
