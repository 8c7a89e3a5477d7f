//! `flytt batch validate` on files as administrators write them.

use std::process::Command;

fn validate(batch_type: &str, csv: &[u8]) -> (Option<i32>, serde_json::Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("users.csv");
    std::fs::write(&file, csv).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_flytt"))
        .args(["batch", "validate", "--json", "--type", batch_type, "--csv"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code(), json)
}

#[test]
fn a_clean_excel_file_passes() {
    let (code, json) = validate(
        "imap",
        b"\xEF\xBB\xBFEmailAddress;UserName;Password\r\nkari@example.org;kari;passord123\r\n",
    );
    assert_eq!(code, Some(0));
    assert_eq!(json["users"], 1);
}

#[test]
fn problems_come_back_with_line_numbers_and_no_passwords() {
    let (code, json) = validate(
        "staged",
        b"EmailAddress,Password\nkari@example.org,hemmel\nkari@example.org,passord123\n",
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        json["errors"],
        serde_json::json!([
            { "line": 2, "message": "Password is shorter than 8 characters" },
            { "line": 3, "message": "kari@example.org is already on line 2" },
        ])
    );
    assert!(!json.to_string().contains("hemmel"));
}

/// An IMAP batch's Password is the user's current password, whatever its
/// length; only a staged batch's new Password has the 8-character rule.
#[test]
fn an_imap_batch_takes_short_current_passwords() {
    let csv =
        b"EmailAddress,UserName,Password\nkari@example.org,kari,kort\nola@example.org,ola,1\n";
    let (code, json) = validate("imap", csv);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["users"], 2);
    let (code, json) = validate("staged", b"EmailAddress,Password\nkari@example.org,kort\n");
    assert_eq!(code, Some(1), "{json}");
}
