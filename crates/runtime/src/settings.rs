//! Layered settings: a service's defaults, overridden by a TOML file, overridden
//! by environment variables.
//!
//! An environment variable `PREFIX__SECTION__KEY` sets `section.key` (keys are
//! lower-cased), so `HERALD_REGISTRY__GRPC__LISTEN_ADDR=0.0.0.0:50051` sets
//! `grpc.listen_addr`. A value is read as the type the setting already has.
//!
//! `--config` may be given more than once: each file is merged over the ones
//! before it (tables key by key; a list, such as `access_keys`, is replaced as a
//! whole). A deployment keeps its ordinary settings in one file and its
//! credentials in a second one, mounted from a secret store.

use std::{collections::HashMap, path::PathBuf};

use anyhow::Context;
use serde::{Serialize, de::DeserializeOwned};
use toml::{Table, Value};

/// Loads settings from explicit sources. Pure: tests pass their own map.
pub fn from_sources<T>(
    file: Option<&str>,
    env: &HashMap<String, String>,
    prefix: &str,
) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    let files: Vec<(String, &str)> = file
        .map(|text| ("settings file".to_owned(), text))
        .into_iter()
        .collect();
    from_files(&files, env, prefix)
}

/// Loads settings from files, each `(name, text)` merged over the ones before
/// it, then the environment. The name is what an error says.
pub fn from_files<T>(
    files: &[(String, &str)],
    env: &HashMap<String, String>,
    prefix: &str,
) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut merged = Table::try_from(T::default()).context("serialize default settings")?;
    for (name, text) in files {
        let table: Table = toml::from_str(text).with_context(|| format!("parse {name}"))?;
        merge(&mut merged, table);
    }
    let prefix = format!("{prefix}__");
    let mut keys: Vec<&String> = env.keys().filter(|k| k.starts_with(&prefix)).collect();
    keys.sort();
    for key in keys {
        let path: Vec<String> = key[prefix.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect();
        set_path(&mut merged, &path, &env[key]).with_context(|| format!("read {key}"))?;
    }
    Value::Table(merged).try_into().context("check settings")
}

/// Loads settings the way a service binary does: each `--config FILE` in
/// order (or, without any, the file named by `{PREFIX}_CONFIG`), then the
/// process environment.
pub fn load<T>(prefix: &str) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned + Default,
{
    let env: HashMap<String, String> = std::env::vars().collect();
    let paths = config_paths(std::env::args().skip(1), &env, prefix)?;
    let mut texts = Vec::with_capacity(paths.len());
    for path in &paths {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        texts.push((path.display().to_string(), text));
    }
    let files: Vec<(String, &str)> = texts
        .iter()
        .map(|(name, text)| (name.clone(), text.as_str()))
        .collect();
    from_files(&files, &env, prefix)
}

/// The settings files the command line names, in order: `--config FILE`
/// (or `-c FILE`), any number of times; `{PREFIX}_CONFIG` when there is none.
fn config_paths(
    args: impl IntoIterator<Item = String>,
    env: &HashMap<String, String>,
    prefix: &str,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut args = args.into_iter();
    let mut paths = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                paths.push(args.next().context("--config needs a file")?.into());
            }
            other => anyhow::bail!("unknown argument {other:?}; usage: [--config FILE]..."),
        }
    }
    if paths.is_empty() {
        paths.extend(env.get(&format!("{prefix}_CONFIG")).map(PathBuf::from));
    }
    Ok(paths)
}

fn merge(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(into)), Value::Table(from)) => merge(into, from),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

fn set_path(table: &mut Table, path: &[String], raw: &str) -> anyhow::Result<()> {
    let (last, parents) = path.split_last().context("empty key")?;
    let mut table = table;
    for part in parents {
        let entry = table
            .entry(part.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = match entry {
            Value::Table(t) => t,
            _ => anyhow::bail!("{part} is not a section"),
        };
    }
    let value = match table.get(last) {
        Some(Value::String(_)) => Value::String(raw.into()),
        Some(Value::Integer(_)) => Value::Integer(raw.parse().context("expected an integer")?),
        Some(Value::Float(_)) => Value::Float(raw.parse().context("expected a number")?),
        Some(Value::Boolean(_)) => Value::Boolean(raw.parse().context("expected true or false")?),
        Some(Value::Array(_)) => Value::Array(
            raw.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.trim().into()))
                .collect(),
        ),
        Some(Value::Table(_)) => anyhow::bail!("{last} is a section, not a value"),
        Some(Value::Datetime(_)) | None => infer(raw),
    };
    table.insert(last.clone(), value);
    Ok(())
}

/// For a setting with no default (an optional one): a number, a boolean, or a string.
fn infer(raw: &str) -> Value {
    if let Ok(i) = raw.parse::<i64>() {
        Value::Integer(i)
    } else if let Ok(b) = raw.parse::<bool>() {
        Value::Boolean(b)
    } else {
        Value::String(raw.into())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        name: String,
        port: u16,
        on: bool,
        inner: Inner,
        maybe: Option<u64>,
        keys: Vec<Key>,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq, Clone)]
    #[serde(deny_unknown_fields)]
    struct Key {
        id: String,
        secret: String,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        account: String,
    }

    impl Default for Sample {
        fn default() -> Self {
            Sample {
                name: "a".into(),
                port: 1,
                on: false,
                inner: Inner {
                    account: "1".into(),
                },
                maybe: None,
                keys: vec![Key {
                    id: "DEV".into(),
                    secret: "dev".into(),
                }],
            }
        }
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let file = "name = \"from-file\"\nport = 7\n[inner]\naccount = \"222\"\n";
        let env = HashMap::from([
            ("APP__PORT".to_owned(), "9".to_owned()),
            ("APP__INNER__ACCOUNT".to_owned(), "123456789012".to_owned()),
            ("APP__MAYBE".to_owned(), "5".to_owned()),
            ("OTHER__PORT".to_owned(), "3".to_owned()),
        ]);
        let s: Sample = from_sources(Some(file), &env, "APP").unwrap();
        assert_eq!(
            s,
            Sample {
                name: "from-file".into(),
                port: 9,
                on: false,
                inner: Inner {
                    account: "123456789012".into()
                },
                maybe: Some(5),
                keys: Sample::default().keys,
            }
        );
    }

    #[test]
    fn a_second_file_replaces_lists_and_merges_tables() {
        let settings = "name = \"from-file\"\nport = 7\n[inner]\naccount = \"222\"\n";
        let secrets = "[[keys]]\nid = \"PROD\"\nsecret = \"s3cret\"\n\n[inner]\n";
        let files = [
            ("settings.toml".to_owned(), settings),
            ("secrets.toml".to_owned(), secrets),
        ];
        let s: Sample = from_files(&files, &HashMap::new(), "APP").unwrap();
        assert_eq!(s.name, "from-file");
        assert_eq!(s.port, 7);
        // An empty [inner] in the second file keeps the first file's keys.
        assert_eq!(s.inner.account, "222");
        // The list is replaced: the default development key is gone.
        assert_eq!(
            s.keys,
            vec![Key {
                id: "PROD".into(),
                secret: "s3cret".into()
            }]
        );
        // An error names the file it is in.
        let bad = [("secrets.toml".to_owned(), "[[keys]]\nid = 1\n")];
        let err = from_files::<Sample>(&bad, &HashMap::new(), "APP").unwrap_err();
        assert!(format!("{err:#}").contains("keys"), "{err:#}");
        let bad = [("secrets.toml".to_owned(), "[[keys]\n")];
        let err = from_files::<Sample>(&bad, &HashMap::new(), "APP").unwrap_err();
        assert!(format!("{err:#}").contains("secrets.toml"), "{err:#}");
    }

    #[test]
    fn config_may_be_given_more_than_once() {
        let args = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let env = HashMap::from([("APP_CONFIG".to_owned(), "/from/env.toml".to_owned())]);
        let paths =
            config_paths(args(&["--config", "/a.toml", "-c", "/b.toml"]), &env, "APP").unwrap();
        assert_eq!(paths, [PathBuf::from("/a.toml"), PathBuf::from("/b.toml")]);
        let paths = config_paths(args(&[]), &env, "APP").unwrap();
        assert_eq!(paths, [PathBuf::from("/from/env.toml")]);
        assert!(
            config_paths(args(&[]), &HashMap::new(), "APP")
                .unwrap()
                .is_empty()
        );
        let err = config_paths(args(&["--gateway", "/a.toml"]), &env, "APP").unwrap_err();
        assert!(err.to_string().contains("--gateway"), "{err}");
        assert!(config_paths(args(&["--config"]), &env, "APP").is_err());
    }

    #[test]
    fn bad_values_are_refused_with_the_variable_named() {
        let env = HashMap::from([("APP__PORT".to_owned(), "many".to_owned())]);
        let err = from_sources::<Sample>(None, &env, "APP").unwrap_err();
        assert!(format!("{err:#}").contains("APP__PORT"), "{err:#}");
        let err = from_sources::<Sample>(Some("colour = 1"), &HashMap::new(), "APP").unwrap_err();
        assert!(format!("{err:#}").contains("colour"), "{err:#}");
    }
}
