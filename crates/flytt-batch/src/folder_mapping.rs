//! Folder mapping rules (the `FolderMapping` batch parameter and CSV
//! column): where a source folder goes on the target when its own path is
//! not where the administrator wants it.
//!
//! A rule is `"Old/Path" -> "New/Path"`: paths as people see them (decoded,
//! `/` between folders, inside the personal namespace, whatever either
//! server's separator and prefix are). A rule moves a subtree: the folder
//! and everything under it (`Old/Path/2019` → `New/Path/2019`). Wildcards
//! save writing a rule per folder: `*` in a folder name matches any text
//! in one folder name, `**` (a whole folder name) any number of folders
//! (at the end of a source path: one at least); the target takes what they matched, in order, where it
//! has the same wildcards (`"Arkiv/*" -> "Archive/*"`,
//! `"INBOX/**" -> "**"`), or puts everything the rule matches into one
//! folder when it has none. The first rule that matches a folder decides;
//! `INBOX` as a rule's first folder matches any case, as IMAP says.
//!
//! The rules are parsed here, once, for the CLI, the API, the dashboard
//! and the CSV import; the engine applies them (`FolderMapping::apply`) to
//! each source folder before the special-use mapping, so a rule also
//! overrides where a special folder would have gone.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Ordered folder mapping rules; empty maps nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderMapping {
    rules: Vec<FolderRule>,
}

/// One `source -> target` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderRule {
    source: Vec<Segment>,
    target: Vec<Segment>,
}

/// One folder name of a rule's path.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// A name, with `*` matching any text within it.
    Name(Vec<Piece>),
    /// `**`: any number of folders.
    AnyDepth,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Star,
}

/// What a wildcard matched.
#[derive(Clone, Debug)]
enum Capture {
    Text(String),
    Folders(Vec<String>),
}

/// Where a rule sends a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// The target path's folder names, decoded.
    pub path: Vec<String>,
    /// How many of the last names are the source path's own, kept as they
    /// were (the folders under the one the rule matched).
    pub kept: usize,
    /// The rule that decided, as written canonically.
    pub rule: String,
}

/// A rule that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("folder mapping {text:?}: {reason}")]
pub struct FolderMappingError {
    /// The rule (or the text around the problem) as written.
    pub text: String,
    pub reason: String,
}

impl FolderMapping {
    /// Reads rules separated by `;` or new lines; blank ones are ignored.
    /// A path may be quoted (`"a -> b"`, with `\"` and `\\` inside) when
    /// it holds `->`, `;`, a quote or spaces at either end.
    pub fn parse(text: &str) -> Result<FolderMapping, FolderMappingError> {
        let mut rules = Vec::new();
        let mut rest = text;
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
            if rest.is_empty() {
                break;
            }
            let (rule, after) = read_rule(rest)?;
            rules.push(rule);
            rest = after;
        }
        Ok(FolderMapping { rules })
    }

    /// Reads each text's rules, in order.
    pub fn parse_all<S: AsRef<str>>(texts: &[S]) -> Result<FolderMapping, FolderMappingError> {
        let mut rules = Vec::new();
        for text in texts {
            rules.extend(FolderMapping::parse(text.as_ref())?.rules);
        }
        Ok(FolderMapping { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules as written canonically, one per entry.
    pub fn rules(&self) -> Vec<String> {
        self.rules.iter().map(FolderRule::to_string).collect()
    }

    /// `first`'s rules, then `self`'s: a user's own rules come before the
    /// batch's, so the user's win where both match a folder.
    pub fn after(&self, first: &FolderMapping) -> FolderMapping {
        FolderMapping {
            rules: first.rules.iter().chain(&self.rules).cloned().collect(),
        }
    }

    /// Where the folder at `path` (decoded folder names, in the personal
    /// namespace) goes by the first rule that matches it and leaves a
    /// non-empty path; `None` when no rule does.
    pub fn apply(&self, path: &[&str]) -> Option<Mapped> {
        self.rules.iter().find_map(|rule| {
            let (path, kept) = rule.apply(path)?;
            Some(Mapped {
                path,
                kept,
                rule: rule.to_string(),
            })
        })
    }
}

/// Several texts' rules, in order.
impl FromIterator<FolderMapping> for FolderMapping {
    fn from_iter<I: IntoIterator<Item = FolderMapping>>(iter: I) -> FolderMapping {
        FolderMapping {
            rules: iter.into_iter().flat_map(|m| m.rules).collect(),
        }
    }
}

impl FolderRule {
    fn apply(&self, path: &[&str]) -> Option<(Vec<String>, usize)> {
        // The longest prefix of the path that the source pattern matches:
        // the folder itself, else the nearest parent the rule moves.
        let (matched, captures) = (1..=path.len()).rev().find_map(|len| {
            let mut captures = Vec::new();
            match_path(&self.source, &path[..len], true, &mut captures).then_some((len, captures))
        })?;
        let mut captures = captures.into_iter();
        let mut mapped = Vec::new();
        for segment in &self.target {
            match segment {
                Segment::AnyDepth => match captures.next() {
                    Some(Capture::Folders(folders)) => mapped.extend(folders),
                    _ => return None,
                },
                Segment::Name(pieces) => {
                    let mut name = String::new();
                    for piece in pieces {
                        match piece {
                            Piece::Text(text) => name.push_str(text),
                            Piece::Star => match captures.next() {
                                Some(Capture::Text(text)) => name.push_str(&text),
                                _ => return None,
                            },
                        }
                    }
                    mapped.push(name);
                }
            }
        }
        mapped.extend(path[matched..].iter().map(|name| name.to_string()));
        (!mapped.is_empty()).then_some((mapped, path.len() - matched))
    }
}

/// Whether `pattern` matches all of `path`, collecting what its wildcards
/// matched. `first` is whether `path` starts at the namespace's top.
fn match_path(
    pattern: &[Segment],
    path: &[&str],
    first: bool,
    captures: &mut Vec<Capture>,
) -> bool {
    let Some((segment, pattern_rest)) = pattern.split_first() else {
        return path.is_empty();
    };
    match segment {
        Segment::AnyDepth => {
            // Longest first: `**` takes as much as the rest allows. At the
            // end it takes one folder at least: `Arkiv/**` is what is
            // under Arkiv, not Arkiv.
            let least = usize::from(pattern_rest.is_empty());
            for len in (least..=path.len()).rev() {
                captures.push(Capture::Folders(
                    path[..len].iter().map(|n| n.to_string()).collect(),
                ));
                if match_path(pattern_rest, &path[len..], first && len == 0, captures) {
                    return true;
                }
                captures.pop();
            }
            false
        }
        Segment::Name(pieces) => {
            let Some((name, path_rest)) = path.split_first() else {
                return false;
            };
            let before = captures.len();
            let fold_case = first && is_inbox_pattern(pieces);
            if match_name(pieces, name, fold_case, captures)
                && match_path(pattern_rest, path_rest, false, captures)
            {
                return true;
            }
            captures.truncate(before);
            false
        }
    }
}

fn is_inbox_pattern(pieces: &[Piece]) -> bool {
    matches!(pieces, [Piece::Text(text)] if text.eq_ignore_ascii_case("INBOX"))
}

/// Whether `pieces` match all of `name`; each `*` takes the shortest text
/// that lets the rest match.
fn match_name(pieces: &[Piece], name: &str, fold_case: bool, captures: &mut Vec<Capture>) -> bool {
    let Some((piece, rest)) = pieces.split_first() else {
        return name.is_empty();
    };
    match piece {
        Piece::Text(text) => {
            let Some(head) = name.get(..text.len()) else {
                return false;
            };
            let same = if fold_case {
                head.eq_ignore_ascii_case(text)
            } else {
                head == text
            };
            same && match_name(rest, &name[text.len()..], fold_case, captures)
        }
        Piece::Star => {
            for (end, _) in name.char_indices().chain([(name.len(), ' ')]) {
                captures.push(Capture::Text(name[..end].to_string()));
                if match_name(rest, &name[end..], fold_case, captures) {
                    return true;
                }
                captures.pop();
            }
            false
        }
    }
}

/// Reads one `source -> target` rule from the start of `text`; returns it
/// and what follows.
fn read_rule(text: &str) -> Result<(FolderRule, &str), FolderMappingError> {
    let rule_text = text
        .split(['\n', ';'])
        .next()
        .unwrap_or(text)
        .trim()
        .to_string();
    let error = |reason: String| FolderMappingError {
        text: rule_text.clone(),
        reason,
    };
    let (source, rest) = read_path(text).map_err(&error)?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let rest = rest
        .strip_prefix("->")
        .ok_or_else(|| error("expected `->` between the source and the target path".into()))?;
    let (target, rest) = read_path(rest).map_err(&error)?;
    let rest = rest.trim_start_matches([' ', '\t', '\r']);
    if !(rest.is_empty() || rest.starts_with([';', '\n'])) {
        return Err(error(format!(
            "unexpected {:?} after the target path (rules are separated by `;` or new lines)",
            rest.chars().take(20).collect::<String>()
        )));
    }
    let source = segments(&source).map_err(|e| error(format!("source path: {e}")))?;
    let target = segments(&target).map_err(|e| error(format!("target path: {e}")))?;
    let wildcards = |segments: &[Segment]| -> Vec<bool> {
        segments
            .iter()
            .flat_map(|s| match s {
                Segment::AnyDepth => vec![true],
                Segment::Name(pieces) => pieces
                    .iter()
                    .filter(|p| **p == Piece::Star)
                    .map(|_| false)
                    .collect(),
            })
            .collect()
    };
    let (from, to) = (wildcards(&source), wildcards(&target));
    if !to.is_empty() && from != to {
        return Err(error(
            "the target's wildcards must be the source's, in the same order (* for *, ** for **), or none".into(),
        ));
    }
    Ok((FolderRule { source, target }, rest))
}

/// Reads one path, quoted or bare, after any blanks.
fn read_path(text: &str) -> Result<(String, &str), String> {
    let text = text.trim_start_matches([' ', '\t']);
    if let Some(quoted) = text.strip_prefix('"') {
        let mut path = String::new();
        let mut chars = quoted.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => return Ok((path, &quoted[at + 1..])),
                '\\' => match chars.next() {
                    Some((_, escaped @ ('"' | '\\'))) => path.push(escaped),
                    _ => return Err("only \\\" and \\\\ may follow a backslash".into()),
                },
                '\n' => break,
                c => path.push(c),
            }
        }
        return Err("a quoted path is not closed".into());
    }
    let end = [text.find("->"), text.find([';', '\n'])]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(text.len());
    let path = text[..end].trim();
    if path.contains('"') {
        return Err("a quote inside a bare path (quote the whole path)".into());
    }
    Ok((path.to_string(), &text[end..]))
}

fn segments(path: &str) -> Result<Vec<Segment>, String> {
    if path.is_empty() {
        return Err("empty".into());
    }
    path.split('/')
        .map(|name| match name {
            "" => Err(format!(
                "{path:?} has an empty folder name (a `/` at an end, or `//`)"
            )),
            "**" => Ok(Segment::AnyDepth),
            name if name.contains("**") => Err(format!(
                "`**` stands alone between slashes; {name:?} is not a folder name"
            )),
            name => Ok(Segment::Name(pieces(name))),
        })
        .collect()
}

fn pieces(name: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for (i, text) in name.split('*').enumerate() {
        if i > 0 {
            pieces.push(Piece::Star);
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
    }
    pieces
}

impl fmt::Display for FolderRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", quoted(&self.source), quoted(&self.target))
    }
}

fn quoted(segments: &[Segment]) -> String {
    let path: Vec<String> = segments
        .iter()
        .map(|s| match s {
            Segment::AnyDepth => "**".to_string(),
            Segment::Name(pieces) => pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(text) => text.as_str(),
                    Piece::Star => "*",
                })
                .collect(),
        })
        .collect();
    let escaped = path.join("/").replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

impl fmt::Display for FolderMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rules().join("; "))
    }
}

/// Stored and shown as a list of rules as written canonically.
impl Serialize for FolderMapping {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.rules().serialize(serializer)
    }
}

/// A stored rule that no longer reads is an error, never an empty mapping.
impl<'de> Deserialize<'de> for FolderMapping {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let texts = Vec::<String>::deserialize(deserializer)?;
        FolderMapping::parse_all(&texts).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(text: &str) -> FolderMapping {
        FolderMapping::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Where `path` goes, joined with `/`; `None` when no rule matches.
    fn apply(mapping: &FolderMapping, path: &str) -> Option<String> {
        let names: Vec<&str> = path.split('/').collect();
        mapping.apply(&names).map(|m| m.path.join("/"))
    }

    #[test]
    fn a_rule_moves_a_folder_and_everything_under_it() {
        let rules = mapping("\"Sendte elementer\" -> \"Gammel post/Sendt\"");
        assert_eq!(
            apply(&rules, "Sendte elementer").as_deref(),
            Some("Gammel post/Sendt")
        );
        assert_eq!(
            apply(&rules, "Sendte elementer/2019/Q1").as_deref(),
            Some("Gammel post/Sendt/2019/Q1")
        );
        assert_eq!(apply(&rules, "Sendte elementerX"), None);
        assert_eq!(apply(&rules, "Prosjekter/Sendte elementer"), None);
    }

    #[test]
    fn wildcards_carry_what_they_matched() {
        let rules = mapping("Arkiv/* -> Archive/*; Kunde-*/** -> Kunder/*/**; INBOX/** -> **");
        assert_eq!(apply(&rules, "Arkiv/2019").as_deref(), Some("Archive/2019"));
        assert_eq!(
            apply(&rules, "Arkiv/2019/Q1").as_deref(),
            Some("Archive/2019/Q1")
        );
        // Arkiv itself: `*` needs a folder name after it.
        assert_eq!(apply(&rules, "Arkiv"), None);
        assert_eq!(
            apply(&rules, "Kunde-Nordvik/2024/Tilbud").as_deref(),
            Some("Kunder/Nordvik/2024/Tilbud")
        );
        // The folder itself is not under itself: `Kunde-* -> Kunder/*`
        // would move it with its children.
        assert_eq!(apply(&rules, "Kunde-Nordvik"), None);
        // INBOX's children go to the top, in any case; a `**` at the end
        // needs a folder, so INBOX itself stays.
        assert_eq!(apply(&rules, "inbox/Kunder/A").as_deref(), Some("Kunder/A"));
        assert_eq!(apply(&rules, "INBOX"), None);
        // In the middle, `**` may match no folder.
        let rules = mapping("a/**/z -> b/**");
        assert_eq!(apply(&rules, "a/z").as_deref(), Some("b"));
        assert_eq!(apply(&rules, "a/x/y/z/q").as_deref(), Some("b/x/y/q"));
    }

    #[test]
    fn a_target_without_wildcards_gathers_and_the_first_rule_decides() {
        let rules = mapping("Gammelt/* -> Arkiv\nGammelt/2019 -> Never");
        assert_eq!(apply(&rules, "Gammelt/2019").as_deref(), Some("Arkiv"));
        assert_eq!(apply(&rules, "Gammelt/2020").as_deref(), Some("Arkiv"));
        assert_eq!(
            apply(&rules, "Gammelt/2020/Mai").as_deref(),
            Some("Arkiv/Mai")
        );
        assert_eq!(apply(&rules, "Gammelt"), None);
        // Names are compared with their case; only INBOX is not.
        assert_eq!(apply(&rules, "gammelt/2019"), None);
    }

    #[test]
    fn stars_inside_names_and_quoted_paths() {
        let rules = mapping(r#""Tilbud \"*\" (*)" -> "Tilbud/*/*"; "a -> b" -> "c; d""#);
        assert_eq!(
            apply(&rules, "Tilbud \"2024\" (Nordvik)").as_deref(),
            Some("Tilbud/2024/Nordvik")
        );
        assert_eq!(apply(&rules, "a -> b").as_deref(), Some("c; d"));
        assert_eq!(
            rules.rules(),
            vec![
                r#""Tilbud \"*\" (*)" -> "Tilbud/*/*""#.to_string(),
                r#""a -> b" -> "c; d""#.to_string()
            ]
        );
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let reason = |text: &str| match FolderMapping::parse(text) {
            Ok(m) => panic!("{text:?} parsed as {m}"),
            Err(e) => e.reason,
        };
        assert!(reason("Arkiv").contains("expected `->`"));
        assert!(reason("-> Arkiv").contains("source path: empty"));
        assert!(reason("Arkiv ->").contains("target path: empty"));
        assert!(reason("Arkiv/ -> X").contains("empty folder name"));
        assert!(reason("a//b -> X").contains("empty folder name"));
        assert!(reason("Ark**iv -> X").contains("stands alone"));
        assert!(reason("\"Arkiv -> X").contains("not closed"));
        assert!(reason("Arkiv -> X Y\" ").contains("quote inside"));
        assert!(reason("\"a\" b -> X").contains("expected `->`"));
        assert!(reason("\"a\" -> \"b\" c").contains("unexpected"));
        assert!(reason("Arkiv/* -> X/**").contains("wildcards"));
        assert!(reason("Arkiv/*/* -> X/*").contains("wildcards"));
        assert!(reason("Arkiv -> X/*").contains("wildcards"));
        let error = FolderMapping::parse("a -> b; c").err();
        assert_eq!(error.map(|e| e.text).as_deref(), Some("c"));
    }

    #[test]
    fn blank_rules_are_nothing_and_users_come_first() {
        assert!(mapping(" ;\n ; ").is_empty());
        let batch = mapping("Arkiv -> Batch");
        let user = mapping("Arkiv -> User");
        assert_eq!(apply(&batch.after(&user), "Arkiv").as_deref(), Some("User"));
        assert_eq!(
            apply(&batch.after(&FolderMapping::default()), "Arkiv").as_deref(),
            Some("Batch")
        );
    }

    #[test]
    fn stored_as_a_list_of_rules_and_read_back() {
        let rules = mapping("Arkiv/* -> Archive/*; \"a;b\" -> c");
        let json = serde_json::to_string(&rules).unwrap_or_default();
        assert_eq!(
            json,
            r#"["\"Arkiv/*\" -> \"Archive/*\"","\"a;b\" -> \"c\""]"#
        );
        assert_eq!(
            serde_json::from_str::<FolderMapping>(&json).ok(),
            Some(rules)
        );
        assert!(serde_json::from_str::<FolderMapping>(r#"["nonsense"]"#).is_err());
    }

    proptest::proptest! {
        /// Whatever an administrator types, the parser answers with rules
        /// or a reason, never a panic; and rules read back from their
        /// canonical text are the same rules, mapping the same way.
        #[test]
        fn any_text_parses_or_fails_cleanly(text in "([ -~\u{e5}\u{f8}]{0,12}(->|;|\\n)?){0,5}") {
            if let Ok(rules) = FolderMapping::parse(&text) {
                let again = FolderMapping::parse_all(&rules.rules());
                proptest::prop_assert_eq!(again.as_ref(), Ok(&rules));
            }
        }

        #[test]
        fn canonical_rules_round_trip(
            source in "[a-zA-Z\u{f8} \"*;>-]{1,8}(/[a-zA-Z*]{1,6}){0,3}",
            target in "[a-zA-Z\u{e5} \"\\;-]{1,8}(/[a-zA-Z]{1,6}){0,2}",
            path in "[a-zA-Z\u{f8} ]{1,6}(/[a-zA-Z]{1,6}){0,4}",
        ) {
            let text = format!("{} -> {}", quote(&source), quote(&target));
            if let Ok(rules) = FolderMapping::parse(&text) {
                let again = FolderMapping::parse_all(&rules.rules());
                proptest::prop_assert_eq!(again.as_ref(), Ok(&rules));
                let names: Vec<&str> = path.split('/').collect();
                let mapped = again.ok().and_then(|a| a.apply(&names));
                proptest::prop_assert_eq!(mapped, rules.apply(&names));
            }
        }
    }

    fn quote(path: &str) -> String {
        format!("\"{}\"", path.replace('\\', "\\\\").replace('"', "\\\""))
    }
}
