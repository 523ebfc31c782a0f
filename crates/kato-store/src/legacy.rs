//! Sealing rows written in clear by versions of Kato before secrets were sealed at rest
//! (`sealed_with IS NULL`). Run at every open, inside [`crate::sealing::prepare`]'s transaction;
//! each update re-checks that its row is still in clear, so two servers starting at once on one
//! PostgreSQL database seal each row once.

use serde_json::Value;

use crate::codec::from_json;
use crate::keys::SecretKey;
use crate::sealing::{Part, place, seal_text, seal_value};
use crate::{StoreError, Tx};

/// Seals every row still in clear; answers how many rows it sealed.
pub(crate) async fn seal_clear_rows(tx: &mut Tx, key: &SecretKey) -> Result<usize, StoreError> {
    Ok(credentials(tx, key).await?
        + installations(tx, key).await?
        + specs(tx, key, Specs::Plugins).await?
        + specs(tx, key, Specs::Versions).await?)
}

async fn credentials(tx: &mut Tx, key: &SecretKey) -> Result<usize, StoreError> {
    let rows: Vec<(String, String, String, String, String)> =
        sqlx::query_as("SELECT team, host, password, ssh_key, known_hosts FROM credentials WHERE sealed_with IS NULL")
            .fetch_all(tx.conn())
            .await?;
    for (team, host, password, ssh_key, known_hosts) in &rows {
        let at = |column| place("credentials", &[team, host], column);
        sqlx::query(
            "UPDATE credentials SET password = $1, ssh_key = $2, known_hosts = $3, sealed_with = $4 \
             WHERE team = $5 AND host = $6 AND sealed_with IS NULL",
        )
        .bind(seal_text(key, &at("password"), password))
        .bind(seal_text(key, &at("ssh_key"), ssh_key))
        .bind(seal_text(key, &at("known_hosts"), known_hosts))
        .bind(key.id())
        .bind(team)
        .bind(host)
        .execute(tx.conn())
        .await?;
    }
    Ok(rows.len())
}

async fn installations(tx: &mut Tx, key: &SecretKey) -> Result<usize, StoreError> {
    let rows: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT team, component, plugin, doc FROM installations WHERE sealed_with IS NULL")
            .fetch_all(tx.conn())
            .await?;
    for (team, component, plugin, doc) in &rows {
        let what = || format!("installation of `{plugin}` on `{component}` in team `{team}`");
        let mut doc: Value = from_json(what, doc)?;
        let (doc, sealed) = seal_value(
            key,
            &place("installations", &[team, component, plugin], "sealed_values"),
            Part::Values,
            &mut doc,
        );
        sqlx::query(
            "UPDATE installations SET doc = $1, sealed_values = $2, sealed_with = $3 \
             WHERE team = $4 AND component = $5 AND plugin = $6 AND sealed_with IS NULL",
        )
        .bind(doc)
        .bind(sealed)
        .bind(key.id())
        .bind(team)
        .bind(component)
        .bind(plugin)
        .execute(tx.conn())
        .await?;
    }
    Ok(rows.len())
}

#[derive(Clone, Copy)]
enum Specs {
    Plugins,
    Versions,
}

async fn specs(tx: &mut Tx, key: &SecretKey, which: Specs) -> Result<usize, StoreError> {
    let (table, select, update) = match which {
        Specs::Plugins => (
            "plugins",
            "SELECT team, name, '', spec FROM plugins WHERE sealed_with IS NULL",
            "UPDATE plugins SET spec = $1, sealed_defaults = $2, sealed_with = $3 \
             WHERE team = $4 AND name = $5 AND sealed_with IS NULL",
        ),
        Specs::Versions => (
            "versions",
            "SELECT team, plugin, CAST(number AS TEXT), spec FROM versions WHERE sealed_with IS NULL",
            "UPDATE versions SET spec = $1, sealed_defaults = $2, sealed_with = $3 \
             WHERE team = $4 AND plugin = $5 AND number = CAST($6 AS BIGINT) AND sealed_with IS NULL",
        ),
    };
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(select).fetch_all(tx.conn()).await?;
    for (team, name, number, spec) in &rows {
        let mut keys = vec![team.as_str(), name.as_str()];
        if !number.is_empty() {
            keys.push(number);
        }
        let at = place(table, &keys, "sealed_defaults");
        let mut doc: Value = from_json(|| format!("the spec at {at}"), spec)?;
        let (doc, sealed) = seal_value(key, &at, Part::SecretDefaults, &mut doc);
        let mut query = sqlx::query(update)
            .bind(doc)
            .bind(sealed)
            .bind(key.id())
            .bind(team)
            .bind(name);
        if !number.is_empty() {
            query = query.bind(number);
        }
        query.execute(tx.conn()).await?;
    }
    Ok(rows.len())
}
