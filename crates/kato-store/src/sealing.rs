//! Secrets at rest: which columns hold sealed values, the key the database records it is sealed
//! with, sealing what older versions of Kato wrote in clear, and rotating the key.
//!
//! Sealed are credentials' password, SSH key and known_hosts; an installation's values (all of
//! them: which items are secret is the version's business, and the store seals the lot); and
//! the `default` of every secret config item of a plug-in draft or version. Documents are stored
//! without what was sealed, the sealed part beside them, and put back together on every read:
//! nothing above the store ever sees a sealed value.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Row};

use crate::codec::{from_json, now};
use crate::error::corrupt;
use crate::keys::{Keyring, SecretKey, open_text, seal};
use crate::{Backend, Store, StoreError, Tx};

/// A column of sealed values, and the key columns that name its row.
struct SealedColumn {
    table: &'static str,
    keys: &'static [&'static str],
    column: &'static str,
}

const SEALED: [SealedColumn; 6] = [
    SealedColumn {
        table: "credentials",
        keys: &["team", "host"],
        column: "password",
    },
    SealedColumn {
        table: "credentials",
        keys: &["team", "host"],
        column: "ssh_key",
    },
    SealedColumn {
        table: "credentials",
        keys: &["team", "host"],
        column: "known_hosts",
    },
    SealedColumn {
        table: "installations",
        keys: &["team", "component", "plugin"],
        column: "sealed_values",
    },
    SealedColumn {
        table: "plugins",
        keys: &["team", "name"],
        column: "sealed_defaults",
    },
    SealedColumn {
        table: "versions",
        keys: &["team", "plugin", "number"],
        column: "sealed_defaults",
    },
];

const TABLES: [&str; 4] = ["credentials", "installations", "plugins", "versions"];

/// Where a sealed value lives, bound to it as associated data.
pub(crate) fn place(table: &str, keys: &[&str], column: &str) -> String {
    format!("{table}/{}/{column}", keys.join("/"))
}

/// Which part of a document is sealed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Part {
    /// An installation's `values`.
    Values,
    /// The `default` of each secret item of a plug-in spec, as `[group index, item index, default]`.
    SecretDefaults,
}

/// Takes the sealed part out of a document; `None` when there is nothing to seal.
fn take(part: Part, doc: &mut Value) -> Option<Value> {
    match part {
        Part::Values => {
            let values = doc.as_object_mut()?.remove("values")?;
            values.as_object().is_some_and(|v| !v.is_empty()).then_some(values)
        }
        Part::SecretDefaults => {
            let mut taken = Vec::new();
            let groups = doc.get_mut("config_groups")?.as_array_mut()?;
            for (g, group) in groups.iter_mut().enumerate() {
                let Some(items) = group.get_mut("items").and_then(Value::as_array_mut) else {
                    continue;
                };
                for (i, item) in items.iter_mut().enumerate() {
                    if item.get("secret") == Some(&Value::Bool(true))
                        && let Some(default) = item.as_object_mut().and_then(|o| o.remove("default"))
                    {
                        taken.push(serde_json::json!([g, i, default]));
                    }
                }
            }
            (!taken.is_empty()).then_some(Value::Array(taken))
        }
    }
}

/// Puts a part [`take`] took back into its document.
fn put(part: Part, doc: &mut Value, sealed: Value) -> Result<(), String> {
    match part {
        Part::Values => {
            let doc = doc.as_object_mut().ok_or("the document is not an object")?;
            doc.insert("values".into(), sealed);
        }
        Part::SecretDefaults => {
            let defaults: Vec<(usize, usize, Value)> = serde_json::from_value(sealed).map_err(|e| e.to_string())?;
            for (g, i, default) in defaults {
                let item = doc
                    .pointer_mut(&format!("/config_groups/{g}/items/{i}"))
                    .and_then(Value::as_object_mut)
                    .ok_or_else(|| format!("the spec has no item {i} in group {g}"))?;
                item.insert("default".into(), default);
            }
        }
    }
    Ok(())
}

/// A document as stored: its text without the sealed part, and that part sealed ('' if none).
pub(crate) fn seal_doc<T: Serialize>(
    key: &SecretKey,
    place: &str,
    part: Part,
    doc: &T,
) -> Result<(String, String), StoreError> {
    let mut doc = serde_json::to_value(doc).map_err(|e| corrupt(format!("encoding {place}"), e))?;
    Ok(seal_value(key, place, part, &mut doc))
}

pub(crate) fn seal_value(key: &SecretKey, place: &str, part: Part, doc: &mut Value) -> (String, String) {
    let sealed = take(part, doc).map_or_else(String::new, |s| seal(key, place, s.to_string().as_bytes()));
    (doc.to_string(), sealed)
}

/// Reads a document [`seal_doc`] stored, with its sealed part put back.
pub(crate) fn open_doc<T: DeserializeOwned>(
    keys: &Keyring,
    place: &str,
    part: Part,
    what: impl Fn() -> String,
    text: &str,
    sealed: &str,
) -> Result<T, StoreError> {
    if sealed.is_empty() {
        return from_json(what, text);
    }
    let mut doc: Value = from_json(&what, text)?;
    let part_value: Value = from_json(&what, &open_text(keys, place, sealed)?)?;
    put(part, &mut doc, part_value).map_err(|e| corrupt(what(), e))?;
    serde_json::from_value(doc).map_err(|e| corrupt(what(), e))
}

/// Seals a text value; '' stays '' (nothing to hide, and "not set" stays visible to the store).
pub(crate) fn seal_text(key: &SecretKey, place: &str, text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        seal(key, place, text.as_bytes())
    }
}

pub(crate) fn open_text_or_empty(keys: &Keyring, place: &str, sealed: &str) -> Result<String, StoreError> {
    if sealed.is_empty() {
        Ok(String::new())
    } else {
        open_text(keys, place, sealed)
    }
}

impl Tx {
    /// The key this transaction seals with: the one the database records. On PostgreSQL the
    /// record stays share-locked until commit, so a rotation waits for this transaction, and a
    /// transaction begun during a rotation sees the new key (and fails if it does not have it).
    pub(crate) async fn sealing_key(&mut self) -> Result<SecretKey, StoreError> {
        if let Some(key) = &self.sealing {
            return Ok(key.clone());
        }
        let sql = match self.backend() {
            Backend::Postgres => "SELECT key_id FROM secret_key WHERE id = 1 FOR SHARE",
            Backend::Sqlite => "SELECT key_id FROM secret_key WHERE id = 1",
        };
        let row: Option<(String,)> = sqlx::query_as(sql).fetch_optional(self.conn()).await?;
        let Some((id,)) = row else {
            return Err(StoreError::SecretKey(
                "the database records no secret key: it was not opened by this version of Kato".into(),
            ));
        };
        let key = self.keys.get(&id).cloned().ok_or_else(|| wrong_key(&id, &self.keys))?;
        self.sealing = Some(key.clone());
        Ok(key)
    }
}

fn wrong_key(recorded: &str, keys: &Keyring) -> StoreError {
    StoreError::SecretKey(format!(
        "the database's secrets are sealed with secret key `{recorded}`, and this server has {}: \
         give it the key the database is sealed with (every server on one database shares one key; \
         after `kato rotate-key`, the new one)",
        keys.ids()
    ))
}

/// Records the key on a database that has none yet, checks the server has the recorded one,
/// and seals what older versions of Kato left in clear. Idempotent, in one transaction: run at
/// every open.
pub(crate) async fn prepare(store: &Store) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let lock = match tx.backend() {
        Backend::Postgres => "SELECT key_id FROM secret_key WHERE id = 1 FOR UPDATE",
        Backend::Sqlite => "SELECT key_id FROM secret_key WHERE id = 1",
    };
    let mut recorded: Option<(String,)> = sqlx::query_as(lock).fetch_optional(tx.conn()).await?;
    if recorded.is_none() {
        // Another replica opening the same new database at once: the first insert wins.
        sqlx::query("INSERT INTO secret_key (id, key_id, sealed_at) VALUES (1, $1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(tx.keys.first().id())
            .bind(now())
            .execute(tx.conn())
            .await?;
        recorded = sqlx::query_as(lock).fetch_optional(tx.conn()).await?;
    }
    let id = recorded.map(|(id,)| id).unwrap_or_default();
    let key = tx.keys.get(&id).cloned().ok_or_else(|| wrong_key(&id, &tx.keys))?;
    tx.sealing = Some(key.clone());
    let sealed = crate::legacy::seal_clear_rows(&mut tx, &key).await?;
    tx.commit().await?;
    if sealed > 0 {
        forget_old_pages(store).await?;
    }
    Ok(())
}

/// On SQLite, moves the WAL into the database and truncates it, so that the pages that held
/// the old values (zeroed by `secure_delete`) are not left in the WAL file.
async fn forget_old_pages(store: &Store) -> Result<(), StoreError> {
    if store.backend() == Backend::Sqlite {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_all(store.pool())
            .await?;
    }
    Ok(())
}

impl Store {
    /// The id of the key the database's secrets are sealed with.
    pub async fn secret_key_id(&self) -> Result<String, StoreError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT key_id FROM secret_key WHERE id = 1")
            .fetch_optional(self.pool())
            .await?;
        row.map(|(id,)| id)
            .ok_or_else(|| StoreError::SecretKey("the database records no secret key".into()))
    }

    /// Re-seals every sealed value with `new`, and records it as the database's key, in one
    /// transaction: afterwards every value is sealed with the new key, or (if anything failed,
    /// the process included) every value still with the old one. Answers how many values were
    /// re-sealed. This store then accepts the new key; other servers on the database need it
    /// given (they refuse to seal with the old one once the rotation committed).
    pub async fn rotate_key(&self, new: SecretKey) -> Result<usize, StoreError> {
        let mut tx = self.begin().await?;
        let lock = match tx.backend() {
            Backend::Postgres => "SELECT key_id FROM secret_key WHERE id = 1 FOR UPDATE",
            Backend::Sqlite => "SELECT key_id FROM secret_key WHERE id = 1",
        };
        let recorded: Option<(String,)> = sqlx::query_as(lock).fetch_optional(tx.conn()).await?;
        let recorded = recorded.map(|(id,)| id).unwrap_or_default();
        if recorded == new.id() {
            return Err(StoreError::SecretKey(format!(
                "the database is already sealed with secret key `{recorded}`"
            )));
        }
        let keys = tx.keys.clone();
        let mut count = 0;
        for col in &SEALED {
            count += reseal_column(&mut tx, &keys, &new, col).await?;
        }
        for table in TABLES {
            let sql = format!("UPDATE {table} SET sealed_with = $1 WHERE sealed_with IS NOT NULL");
            sqlx::query(AssertSqlSafe(sql))
                .bind(new.id())
                .execute(tx.conn())
                .await?;
        }
        sqlx::query("UPDATE secret_key SET key_id = $1, sealed_at = $2 WHERE id = 1")
            .bind(new.id())
            .bind(now())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        self.add_key(new);
        // Done: a failure to tidy the WAL must not make the caller think the rotation failed.
        let _ = forget_old_pages(self).await;
        Ok(count)
    }
}

async fn reseal_column(tx: &mut Tx, keys: &Keyring, new: &SecretKey, col: &SealedColumn) -> Result<usize, StoreError> {
    let (table, column) = (col.table, col.column);
    let key_list: Vec<String> = col.keys.iter().map(|k| format!("CAST({k} AS TEXT)")).collect();
    let select = format!(
        "SELECT {}, {column} FROM {table} WHERE {column} <> ''",
        key_list.join(", ")
    );
    let rows = sqlx::query(AssertSqlSafe(select)).fetch_all(tx.conn()).await?;
    // `number` is the one numeric key column: compared as a number so its index serves.
    let matches: Vec<String> = col
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| match *k {
            "number" => format!("{k} = CAST(${} AS BIGINT)", i + 2),
            _ => format!("{k} = ${}", i + 2),
        })
        .collect();
    let update = format!("UPDATE {table} SET {column} = $1 WHERE {}", matches.join(" AND "));
    for row in &rows {
        let ids: Vec<String> = (0..col.keys.len())
            .map(|i| row.try_get::<String, _>(i))
            .collect::<Result<_, _>>()?;
        let sealed: String = row.try_get(col.keys.len())?;
        let ids_ref: Vec<&str> = ids.iter().map(String::as_str).collect();
        let at = place(table, &ids_ref, column);
        let plain = crate::keys::open(keys, &at, &sealed)?;
        let mut query = sqlx::query(AssertSqlSafe(update.clone())).bind(seal(new, &at, &plain));
        for id in &ids {
            query = query.bind(id.as_str());
        }
        query.execute(tx.conn()).await?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_defaults_are_taken_out_and_put_back() {
        let spec = serde_json::json!({"name": "p", "config_groups": [
            {"name": "a", "items": [{"name": "USER", "default": "u"}, {"name": "PASS", "secret": true, "default": "pw"}]},
            {"name": "b", "items": [{"name": "KEY", "secret": true, "default": ["x", "y"]}, {"name": "NONE", "secret": true}]},
        ]});
        let mut doc = spec.clone();
        let taken = take(Part::SecretDefaults, &mut doc).unwrap();
        assert!(
            !doc.to_string().contains("pw") && !doc.to_string().contains("\"x\""),
            "{doc}"
        );
        assert_eq!(doc["config_groups"][0]["items"][0]["default"], "u");
        put(Part::SecretDefaults, &mut doc, taken).unwrap();
        assert_eq!(doc, spec);

        let mut plain = serde_json::json!({"name": "p", "config_groups": [{"name": "a", "items": [{"name": "U"}]}]});
        assert_eq!(take(Part::SecretDefaults, &mut plain), None);
    }

    #[test]
    fn values_are_taken_out_and_put_back() {
        let inst = serde_json::json!({"plugin": "p", "values": {"base": {"PASS": "pw"}}, "revision": 1});
        let mut doc = inst.clone();
        let taken = take(Part::Values, &mut doc).unwrap();
        assert_eq!(doc, serde_json::json!({"plugin": "p", "revision": 1}));
        put(Part::Values, &mut doc, taken).unwrap();
        assert_eq!(doc, inst);
        let mut empty = serde_json::json!({"plugin": "p", "values": {}});
        assert_eq!(take(Part::Values, &mut empty), None);
    }

    #[test]
    fn documents_round_trip_through_sealing() {
        let key = SecretKey::generate();
        let keys = Keyring::new(key.clone());
        let doc = serde_json::json!({"plugin": "p", "values": {"base": {"PASS": "hunter2"}}});
        let (text, sealed) = seal_doc(&key, "installations/t/c/p/sealed_values", Part::Values, &doc).unwrap();
        assert!(!text.contains("hunter2") && !sealed.contains("hunter2"));
        let back: Value = open_doc(
            &keys,
            "installations/t/c/p/sealed_values",
            Part::Values,
            || "it".into(),
            &text,
            &sealed,
        )
        .unwrap();
        assert_eq!(back, doc);
    }
}
