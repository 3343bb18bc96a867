//! `cargo xtask gen-operations [--check]`: writes the gateway's table of the
//! AWS IoT operations, `crates/gateway/src/http/operations.rs`, from the
//! `iot` model of the botocore that Python imports; with `--check`, fails when
//! the committed file differs from what it would write.
//!
//! botocore's loader reads the model (it may be compressed), so Python does
//! the reading and prints one operation a line; the table is rendered here,
//! already as rustfmt formats it.

use std::{fmt::Write as _, path::Path, process::Command};

use crate::{
    flags,
    util::{self, Context as _, Result, bail},
};

/// The generated file, from the project root.
pub(crate) const OUTPUT: &str = "crates/gateway/src/http/operations.rs";

/// Set to `1` (as CI does), a check without botocore fails instead of skipping.
pub(crate) const REQUIRE_ENV: &str = "HERALD_REQUIRE_BOTOCORE";

/// The service and API version of the model.
const SERVICE: &str = "iot";
const API_VERSION: &str = "2015-05-28";

/// Exits 3 when botocore cannot be imported; else prints botocore's version,
/// then `method TAB requestUri TAB name` for each operation of the model.
const READ_MODEL: &str = r#"
import sys
try:
    import botocore
    import botocore.loaders
except ImportError as err:
    print(err, file=sys.stderr)
    sys.exit(3)
model = botocore.loaders.Loader().load_service_model(sys.argv[1], "service-2", sys.argv[2])
print(botocore.__version__)
for name, operation in model["operations"].items():
    print(operation["http"]["method"], operation["http"]["requestUri"], name, sep="\t")
"#;

pub(crate) fn run(flags: &flags::GenOperations) -> Result<()> {
    let root = util::project_root();
    if flags.check {
        return check(&root);
    }
    let Some(model) = read_model()? else {
        bail!(
            "botocore is not importable by python3; install it with: python3 -m pip install botocore"
        );
    };
    let path = root.join(OUTPUT);
    std::fs::write(&path, render(&model)).with_context(|| format!("write {}", path.display()))?;
    println!(
        "wrote {OUTPUT}: {} operations of botocore {}",
        model.operations.len(),
        model.botocore_version
    );
    Ok(())
}

/// The `--check` of `cargo xtask test`: the committed table is what the
/// installed botocore generates. Without botocore it says so and passes,
/// unless [`REQUIRE_ENV`] is `1`.
pub(crate) fn check(root: &Path) -> Result<()> {
    let Some(model) = read_model()? else {
        if std::env::var_os(REQUIRE_ENV).is_some_and(|value| value == "1") {
            bail!(
                "gen-operations --check: botocore is not importable by python3, and {REQUIRE_ENV}=1 requires it; install it with: python3 -m pip install botocore"
            );
        }
        println!(
            "note: skipping the check of {OUTPUT} against botocore's model: botocore is not importable by python3 (python3 -m pip install botocore; set {REQUIRE_ENV}=1 to make this an error)"
        );
        return Ok(());
    };
    let path = root.join(OUTPUT);
    let committed =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let generated = render(&model);
    if committed == generated {
        println!(
            "{OUTPUT} is up to date with botocore {}",
            model.botocore_version
        );
        return Ok(());
    }
    let hint = match generated_from(&committed) {
        Some(version) if version != model.botocore_version => format!(
            "it was generated from botocore {version}, and python3 imports botocore {}: install botocore=={version}, or regenerate it",
            model.botocore_version
        ),
        _ => "it was edited by hand, or the model changed".to_owned(),
    };
    bail!(
        "{OUTPUT} is not what `cargo xtask gen-operations` generates ({hint}); first difference: {}\nRun `cargo xtask gen-operations` and commit the result.",
        first_difference(&committed, &generated)
    )
}

/// What the model gives the table.
#[derive(Debug, PartialEq, Eq)]
struct Model {
    botocore_version: String,
    /// (method, requestUri without its query part, operation name), sorted
    /// by template, then method.
    operations: Vec<(String, String, String)>,
}

/// The installed botocore's model; `None` when python3 or botocore is missing.
fn read_model() -> Result<Option<Model>> {
    let output = match Command::new("python3")
        .args(["-c", READ_MODEL, SERVICE, API_VERSION])
        .output()
    {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).context("run python3"),
    };
    if output.status.code() == Some(3) {
        return Ok(None);
    }
    if !output.status.success() {
        bail!(
            "python3 could not read botocore's {SERVICE} model ({}): {}",
            util::describe(output.status),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8(output.stdout).context("read python3's output")?;
    parse_model(&text).map(Some)
}

fn parse_model(text: &str) -> Result<Model> {
    let mut lines = text.lines();
    let botocore_version = lines
        .next()
        .filter(|version| !version.trim().is_empty())
        .context("no botocore version in python3's output")?
        .trim()
        .to_owned();
    let mut operations = Vec::new();
    for line in lines.filter(|line| !line.trim().is_empty()) {
        let mut fields = line.split('\t');
        let (Some(method), Some(uri), Some(name), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            bail!("unexpected line in python3's output: {line:?}");
        };
        let template = uri.split_once('?').map_or(uri, |(path, _)| path);
        let quotable = |text: &str| !text.is_empty() && !text.contains(['"', '\\']);
        if !(quotable(method) && quotable(template) && quotable(name)) {
            bail!("unexpected operation in botocore's model: {line:?}");
        }
        operations.push((method.to_owned(), template.to_owned(), name.to_owned()));
    }
    if operations.is_empty() {
        bail!("botocore's {SERVICE} model has no operations");
    }
    operations.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    Ok(Model {
        botocore_version,
        operations,
    })
}

/// rustfmt keeps a tuple on one line while its elements fit in 60 columns.
const ONE_LINE_WIDTH: usize = 60;

/// The generated file: a header, then the table as rustfmt lays it out.
fn render(model: &Model) -> String {
    let mut out = format!(
        "\
//! Every operation of botocore's `{SERVICE}` {API_VERSION} model (botocore {version}), as
//! (method, requestUri template without its query part, operation name),
//! sorted by template, then method.
//!
//! Generated by `cargo xtask gen-operations` from the model of the installed
//! botocore; do not edit. `cargo xtask test` checks that it is up to date.

pub(crate) const OPERATIONS: &[(&str, &str, &str)] = &[
",
        version = model.botocore_version
    );
    for (method, template, name) in &model.operations {
        let elements = format!("\"{method}\", \"{template}\", \"{name}\"");
        if elements.len() <= ONE_LINE_WIDTH {
            let _ = writeln!(out, "    ({elements}),");
        } else {
            let _ = writeln!(
                out,
                "    (\n        \"{method}\",\n        \"{template}\",\n        \"{name}\",\n    ),"
            );
        }
    }
    out.push_str("];\n");
    out
}

/// The botocore version a generated file names in its header.
fn generated_from(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once("model (botocore ")?;
    rest.split_once(')').map(|(version, _)| version)
}

/// `line N: "committed" != "generated"`, for the check's message.
fn first_difference(committed: &str, generated: &str) -> String {
    let mut committed_lines = committed.lines();
    let mut generated_lines = generated.lines();
    for number in 1.. {
        match (committed_lines.next(), generated_lines.next()) {
            (None, None) => break,
            (ours, theirs) if ours == theirs => {}
            (ours, theirs) => {
                return format!(
                    "line {number}: the file has {:?}, the model gives {:?}",
                    ours.unwrap_or("(end of file)"),
                    theirs.unwrap_or("(end of file)")
                );
            }
        }
    }
    "the line endings".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT_OF_PYTHON: &str = "1.2.3\n\
        GET\t/things/{thingName}\tDescribeThing\n\
        GET\t/things?usePrefixAttributeValue=true\tListThings\n\
        POST\t/things/{thingName}\tCreateThing\n\
        DELETE\t/things/{thingName}\tDeleteThing\n\
        POST\t/audit/mitigationactions/tasks/{taskId}/cancel-all-the-things\tCancelAll\n";

    #[test]
    fn the_model_is_read_sorted_without_query_parts() {
        let model = parse_model(OUTPUT_OF_PYTHON).unwrap();
        assert_eq!(model.botocore_version, "1.2.3");
        let operations: Vec<(&str, &str, &str)> = model
            .operations
            .iter()
            .map(|(m, t, n)| (m.as_str(), t.as_str(), n.as_str()))
            .collect();
        assert_eq!(
            operations,
            [
                (
                    "POST",
                    "/audit/mitigationactions/tasks/{taskId}/cancel-all-the-things",
                    "CancelAll"
                ),
                ("GET", "/things", "ListThings"),
                ("DELETE", "/things/{thingName}", "DeleteThing"),
                ("GET", "/things/{thingName}", "DescribeThing"),
                ("POST", "/things/{thingName}", "CreateThing"),
            ]
        );
        assert!(parse_model("").is_err());
        assert!(parse_model("1.2.3\n").is_err());
        assert!(parse_model("1.2.3\nGET\t/x\n").is_err());
        assert!(parse_model("1.2.3\nGET\t/x\"\tX\n").is_err());
    }

    #[test]
    fn the_table_is_laid_out_as_rustfmt_does() {
        let rendered = render(&parse_model(OUTPUT_OF_PYTHON).unwrap());
        assert!(rendered.starts_with(
            "//! Every operation of botocore's `iot` 2015-05-28 model (botocore 1.2.3), as\n"
        ));
        assert!(rendered.contains("Generated by `cargo xtask gen-operations`"));
        assert!(rendered.contains(
            "    (\n        \"POST\",\n        \"/audit/mitigationactions/tasks/{taskId}/cancel-all-the-things\",\n        \"CancelAll\",\n    ),\n"
        ));
        assert!(rendered.contains("\n    (\"GET\", \"/things\", \"ListThings\"),\n"));
        assert!(
            rendered.ends_with("    (\"POST\", \"/things/{thingName}\", \"CreateThing\"),\n];\n")
        );
        assert_eq!(generated_from(&rendered), Some("1.2.3"));
    }

    #[test]
    fn the_committed_table_is_one_this_generator_wrote() {
        let committed = std::fs::read_to_string(util::project_root().join(OUTPUT)).unwrap();
        let version = generated_from(&committed).expect("a header naming botocore's version");
        let mut python = format!("{version}\n");
        for line in committed.lines() {
            let line = line
                .trim()
                .trim_start_matches('(')
                .trim_end_matches([',', ')']);
            let fields: Vec<&str> = line
                .split(", ")
                .map(|field| field.trim_matches('"'))
                .collect();
            if let [method, template, name] = fields[..]
                && template.starts_with('/')
            {
                python.push_str(&format!("{method}\t{template}\t{name}\n"));
            }
        }
        let mut multi_line = committed.lines().peekable();
        while let Some(line) = multi_line.next() {
            if line == "    (" {
                let fields: Vec<&str> = (0..3)
                    .filter_map(|_| multi_line.next())
                    .map(|field| field.trim().trim_end_matches(',').trim_matches('"'))
                    .collect();
                python.push_str(&fields.join("\t"));
                python.push('\n');
            }
        }
        assert_eq!(render(&parse_model(&python).unwrap()), committed);
    }

    #[test]
    fn differences_are_shown_by_line() {
        assert_eq!(
            first_difference("a\nb\nc\n", "a\nx\nc\n"),
            r#"line 2: the file has "b", the model gives "x""#
        );
        assert_eq!(
            first_difference("a\n", "a\nb\n"),
            r#"line 2: the file has "(end of file)", the model gives "b""#
        );
    }
}
