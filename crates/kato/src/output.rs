//! Printing answers: aligned tables for people, JSON or YAML for scripts.

use serde_json::Value;

use crate::cli::Format;

/// A column: its header and where its cell comes from in each row.
pub type Column = (&'static str, fn(&Value) -> String);

pub fn field(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

pub fn print(value: &Value, format: Format, columns: &[Column]) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Format::Yaml => print!("{}", serde_yaml::to_string(value).unwrap_or_default()),
        Format::Table => {
            let rows: Vec<&Value> = match value {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            print!("{}", table(&rows, columns));
        }
    }
}

fn table(rows: &[&Value], columns: &[Column]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|(_, f)| f(r)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |items: Vec<&str>| {
        let mut s = String::new();
        for (i, item) in items.iter().enumerate() {
            if i + 1 == items.len() {
                s.push_str(item);
            } else {
                s.push_str(&format!("{item:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(columns.iter().map(|(h, _)| *h).collect());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns() {
        let rows = [json!({"name": "web", "n": 1}), json!({"name": "collector", "n": null})];
        let refs: Vec<&Value> = rows.iter().collect();
        let cols: [Column; 2] = [("NAME", |v| field(v, "name")), ("N", |v| field(v, "n"))];
        assert_eq!(table(&refs, &cols), "NAME       N\nweb        1\ncollector  -\n");
    }
}
