//! Checks on the files around the code, run by `cargo test` (no separate CI step):
//! the deploy manifests are well formed without a YAML parser, their kustomize
//! references resolve, and the cluster's registry settings are ones the registry knows.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::util::project_root;

#[test]
fn deploy_manifests_are_well_formed() {
    let deploy = project_root().join("deploy");
    let files = yaml_files(&deploy);
    assert!(
        files.len() >= 5,
        "expected the base and both overlays under {}, found {files:?}",
        deploy.display()
    );
    for file in &files {
        let text = fs::read_to_string(file).unwrap();
        let shown = file.strip_prefix(&deploy).unwrap().display();
        assert!(!text.trim().is_empty(), "{shown} is empty");
        assert!(
            !text.contains('\t'),
            "{shown} has a tab: YAML indents with spaces"
        );
        let docs = documents(&text);
        assert!(
            !docs
                .iter()
                .flatten()
                .any(|line| line.starts_with("commonLabels:")),
            "{shown}: use `labels:` with includeSelectors: false, not commonLabels"
        );
        for (i, doc) in docs.iter().enumerate() {
            for key in ["apiVersion:", "kind:"] {
                assert!(
                    doc.iter().any(|line| line.starts_with(key)),
                    "{shown}: document {} has no {key}",
                    i + 1
                );
            }
        }
        if file
            .file_name()
            .is_some_and(|name| name == "kustomization.yaml")
        {
            let dir = file.parent().unwrap();
            for reference in kustomize_references(&text) {
                assert!(
                    dir.join(&reference).exists(),
                    "{shown} refers to {reference}, which does not exist"
                );
            }
        }
    }
}

#[test]
fn cluster_settings_are_known_to_the_services() {
    let root = project_root();
    for service in ["registry", "config", "gateway"] {
        let ours = fs::read_to_string(root.join(format!("deploy/base/{service}.toml"))).unwrap();
        let example = root.join(format!("crates/{service}/{service}.example.toml"));
        let known = settings_keys(&fs::read_to_string(example).unwrap());
        let ours = settings_keys(&ours);
        assert!(ours.contains(&"data_dir".to_owned()), "{service}: {ours:?}");
        for key in ours {
            assert!(
                known.contains(&key),
                "deploy/base/{service}.toml sets {key}, which {service}.example.toml does not know"
            );
        }
    }
}

#[test]
fn ci_entry_point_is_executable() {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(project_root().join(".ci/run"))
        .unwrap()
        .permissions()
        .mode();
    assert!(
        mode & 0o111 != 0,
        ".ci/run is not executable: chmod +x .ci/run"
    );
}

/// Section numbers cite a public document named just before them (the MQTT
/// specifications, an RFC): a maintainer with only this repository must be
/// able to follow every citation. AWS pages are cited by their names.
#[test]
fn section_citations_name_a_public_document() {
    let root = project_root();
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(listed.status.success(), "git ls-files failed");
    let mut unnamed = Vec::new();
    for path in listed.stdout.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        let path = String::from_utf8_lossy(path).into_owned();
        let Ok(text) = fs::read_to_string(root.join(&path)) else {
            continue; // not text
        };
        for (line, citation) in uncited_sections(&text) {
            unnamed.push(format!("{path}:{line}: {citation}"));
        }
    }
    assert!(
        unnamed.is_empty(),
        "section numbers without the document they are from (write `MQTT 3.1.1 §x`, \
         `RFC n §x`, or the AWS page's name):\n{}",
        unnamed.join("\n")
    );
}

/// The `§` citations of `text` with no `MQTT` or `RFC` in the 200 characters
/// before them: (line number, the line).
fn uncited_sections(text: &str) -> Vec<(usize, String)> {
    const WINDOW: usize = 200;
    const SECTION: char = '\u{a7}';
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    for (at, _) in chars.iter().enumerate().filter(|(_, c)| **c == SECTION) {
        let before: String = chars[at.saturating_sub(WINDOW)..at].iter().collect();
        if before.contains("MQTT") || before.contains("RFC") {
            continue;
        }
        let line = chars[..at].iter().filter(|c| **c == '\n').count() + 1;
        let shown = text.lines().nth(line - 1).unwrap_or_default().trim();
        found.push((line, shown.to_owned()));
    }
    found
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            found.extend(yaml_files(&path));
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            found.push(path);
        }
    }
    found
}

/// The documents of a YAML stream (split at `---`), each without comments and blank lines.
fn documents(text: &str) -> Vec<Vec<&str>> {
    let mut docs = vec![Vec::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(Vec::new());
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            docs.last_mut().unwrap().push(line);
        }
    }
    docs.retain(|doc| !doc.is_empty());
    docs
}

/// The files a kustomization names: `resources` entries, `path:` of `patches`,
/// and `files` of generators (`key=file` or `file`).
fn kustomize_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut section = "";
    let mut in_files = false;
    // The indentation of a `key: |` line whose block (an inline patch) is being skipped.
    let mut block: Option<usize> = None;
    for line in text.lines() {
        let content = line.split(" #").next().unwrap().trim_end();
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let indent = content.len() - content.trim_start().len();
        match block {
            Some(outer) if indent > outer => continue,
            _ => block = None,
        }
        if content.ends_with('|') || content.ends_with("|-") || content.ends_with('>') {
            block = Some(indent);
            continue;
        }
        if !content.starts_with(' ') && !content.starts_with('-') {
            section = content.split(':').next().unwrap();
            in_files = false;
            continue;
        }
        let item = content.trim_start();
        match section {
            "resources" => {
                if let Some(entry) = item.strip_prefix("- ") {
                    found.push(unquote(entry));
                }
            }
            "patches" => {
                if let Some(path) = item
                    .strip_prefix("- path:")
                    .or_else(|| item.strip_prefix("path:"))
                {
                    found.push(unquote(path));
                }
            }
            "configMapGenerator" | "secretGenerator" => {
                if item == "files:" || item == "- files:" {
                    in_files = true;
                } else if in_files
                    && let Some(entry) = item.strip_prefix("- ")
                    && !entry.contains(": ")
                {
                    let file = entry.rsplit('=').next().unwrap();
                    found.push(unquote(file));
                } else {
                    in_files = false;
                }
            }
            _ => {}
        }
    }
    found
}

fn unquote(value: &str) -> String {
    value.trim().trim_matches(['"', '\'']).to_owned()
}

/// `section.key` for every key a TOML file sets (a light parse: tables and `key =` lines).
fn settings_keys(text: &str) -> Vec<String> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(comment) = line.strip_prefix('#') {
            // `# key = value`: a setting with no default, shown commented out.
            if let Some((key, _)) = comment.trim().split_once(" = ")
                && !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                keys.push(format!("{section}{key}"));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            // `[[name]]`, an array of tables: `name` itself is a setting (a list).
            let name = name.trim_start_matches('[').trim_end_matches(']').trim();
            if line.starts_with("[[") {
                keys.push(name.to_owned());
            }
            section = format!("{name}.");
        } else if let Some((key, _)) = line.split_once('=') {
            keys.push(format!("{section}{}", key.trim()));
        }
    }
    keys
}

#[test]
fn section_citations_need_a_document_before_them() {
    assert!(uncited_sections("MQTT 3.1.1 \u{a7}4.7, and \u{a7}4.8").is_empty());
    assert!(uncited_sections("RFC 9113\n// \u{a7}3.4").is_empty());
    assert_eq!(
        uncited_sections("a\nsee the spec \u{a7}3.1 \u{e9}"),
        vec![(2, "see the spec \u{a7}3.1 \u{e9}".to_owned())]
    );
}

#[test]
fn the_light_parsers_read_what_they_should() {
    let kustomization = "\
resources:
  - ../../base   # the base
  - extra.yaml
labels:
  - pairs:
      a: b
configMapGenerator:
  - name: cfg
    files:
      - registry.toml
      - other=other.toml
    options:
      disableNameSuffixHash: true
patches:
  - path: patch.yaml
  - target:
      kind: StatefulSet
    patch: |-
      - op: replace
        path: /spec/replicas
        value: 1
  - path: later.yaml
";
    assert_eq!(
        kustomize_references(kustomization),
        [
            "../../base",
            "extra.yaml",
            "registry.toml",
            "other.toml",
            "patch.yaml",
            "later.yaml"
        ]
    );
    assert_eq!(
        settings_keys("a = 1\n# prose, e.g. b = 2\n[grpc]\nlisten_addr = \"x\"\n# c = 3\n"),
        ["a", "grpc.listen_addr", "grpc.c"]
    );
    assert_eq!(
        settings_keys("[mqtt]\nusers = []\n[[mqtt.users]]\nusername = \"u\"\n"),
        ["mqtt.users", "mqtt.users", "mqtt.users.username"]
    );
    assert_eq!(documents("# head\na: 1\n---\n\n---\nb: 2\n").len(), 2);
}
