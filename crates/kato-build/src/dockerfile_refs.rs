//! What a Dockerfile makes the builder fetch: every `FROM` image, `COPY --from=` image,
//! `RUN --mount=…,from=` image and `ADD` URL, with `ARG` and `ENV` substituted as the builder
//! would, each checked against the platform registry's tenancy ([`PlatformScope`]).
//!
//! Values Kato cannot know before the build stay unknown: a global `ARG` with no default and
//! no build arg, and inside a stage every variable not set there by `ENV` (a stage's `ARG` may
//! be overridden by its base image's environment, which the team chooses). A reference whose
//! unknown part could make it another team's repository is refused, as is one that names one.

use std::collections::{HashMap, HashSet};

use crate::dockerfile_lex::{Word, escape_char, expand, instructions, split_words};
use crate::platform_scope::{PlatformScope, Reach};

/// Why a Dockerfile may not be built: `line` is its first line, `instruction` as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub line: usize,
    pub instruction: String,
    pub why: String,
}

/// Checks every reference the Dockerfile `text` makes the builder fetch, for a build of
/// `team` with `build_args`; the first refused one is answered.
pub(crate) fn check(
    text: &str,
    build_args: &HashMap<String, String>,
    scope: &PlatformScope,
    team: &str,
) -> Result<usize, Refusal> {
    let mut checker = Checker {
        scope,
        team,
        build_args,
        global: HashMap::new(),
        stage: None,
        stages: HashSet::new(),
        checked: 0,
    };
    // The builder ignores a byte-order mark; so must the instructions it hides.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let escape = escape_char(text);
    for (line, instruction) in instructions(text, escape) {
        checker.instruction(&instruction, escape).map_err(|why| Refusal {
            line,
            instruction: instruction.trim().to_owned(),
            why,
        })?;
    }
    Ok(checker.checked)
}

struct Checker<'a> {
    scope: &'a PlatformScope,
    team: &'a str,
    build_args: &'a HashMap<String, String>,
    /// Global `ARG`s (before the first `FROM`): `None` when their value is unknown.
    global: HashMap<String, Option<String>>,
    /// The current stage's `ENV`s; `None` before the first `FROM`.
    stage: Option<HashMap<String, String>>,
    /// Stage names so far (`FROM … AS name`), lowercased.
    stages: HashSet<String>,
    checked: usize,
}

impl Checker<'_> {
    fn instruction(&mut self, instruction: &str, escape: char) -> Result<(), String> {
        let trimmed = instruction.trim_start();
        let (keyword, rest) = trimmed.split_once(char::is_whitespace).unwrap_or((trimmed, ""));
        let words = split_words(rest, escape);
        match keyword.to_ascii_uppercase().as_str() {
            "FROM" => self.from(&words, escape),
            "ARG" => {
                self.arg(&words, escape);
                Ok(())
            }
            "ENV" => {
                self.env(rest, &words, escape);
                Ok(())
            }
            "COPY" => self.flags(&words, escape, "COPY"),
            "RUN" => self.flags(&words, escape, "RUN"),
            "ADD" => {
                self.flags(&words, escape, "ADD")?;
                self.add_sources(rest, &words, escape)
            }
            // Its instruction runs in builds FROM this image; checked here all the same.
            "ONBUILD" => self.instruction(rest, escape),
            _ => Ok(()),
        }
    }

    fn from(&mut self, words: &[String], escape: char) -> Result<(), String> {
        let args: Vec<&String> = words.iter().filter(|w| !w.starts_with("--")).collect();
        let image = args.first().map_or(Word::Known(String::new()), |w| {
            expand(w, escape, &|name| self.global_value(name))
        });
        let stage_name = match (args.get(1), args.get(2)) {
            (Some(kw), Some(name)) if kw.eq_ignore_ascii_case("as") => Some(name.to_ascii_lowercase()),
            _ => None,
        };
        let result = self.image(&image, "FROM");
        self.stage = Some(HashMap::new());
        // Only a name no image can have: `FROM x AS host:1/t/i` must not hide `FROM host:1/t/i`.
        self.stages.extend(stage_name.filter(|n| is_stage_name(n)));
        result
    }

    /// The flags before an instruction's arguments: `--from=` and `--mount=…,from=` name
    /// images; `--network=host` would reach the server's loopback.
    fn flags(&mut self, words: &[String], escape: char, keyword: &str) -> Result<(), String> {
        let mut i = 0;
        while let Some(flag) = words.get(i).filter(|w| w.starts_with("--")) {
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_ascii_lowercase(), v.to_owned()),
                // `--from X`: the next word is its value.
                None => {
                    i += 1;
                    (flag.to_ascii_lowercase(), words.get(i).cloned().unwrap_or_default())
                }
            };
            i += 1;
            let value = self.expand_in_stage(&value, escape);
            match (keyword, name.as_str()) {
                ("COPY", "--from") => self.stage_or_image(&value, "COPY --from")?,
                ("RUN", "--mount") => self.mount(&value)?,
                ("RUN", "--network") => match &value {
                    Word::Known(v) if matches!(v.as_str(), "default" | "none") => {}
                    _ => {
                        return Err(format!(
                            "RUN --network={}: a build step may not leave its own network: it would reach the \
                             server's loopback, where the platform registry may be; leave the flag out",
                            written(&value)
                        ));
                    }
                },
                _ => {}
            }
        }
        Ok(())
    }

    fn mount(&mut self, value: &Word) -> Result<(), String> {
        let text = match value {
            Word::Known(t) => t,
            // The unknown part may hold a `from=`.
            Word::Unknown { var, written, .. } => {
                return Err(unknown_message(written, var, "RUN --mount", &self.own()));
            }
        };
        for field in text.split(',') {
            if let Some((key, from)) = field.split_once('=')
                && key.trim().eq_ignore_ascii_case("from")
            {
                let from = Word::Known(from.trim().trim_matches(['"', '\'']).to_owned());
                self.stage_or_image(&from, "RUN --mount from")?;
            }
        }
        Ok(())
    }

    fn add_sources(&mut self, rest: &str, words: &[String], escape: char) -> Result<(), String> {
        let args: Vec<String> = words.iter().skip_while(|w| w.starts_with("--")).cloned().collect();
        let args = match args.first() {
            Some(first) if first.starts_with('[') => {
                let json = rest.trim_start();
                let json = &json[json.find('[').unwrap_or(0)..];
                serde_json::from_str::<Vec<String>>(json).unwrap_or(args)
            }
            _ => args,
        };
        let sources = args.len().saturating_sub(1);
        for source in &args[..sources] {
            self.checked += 1;
            match self.expand_in_stage(source, escape) {
                Word::Known(url) if self.scope.reaches_url(&url) != Reach::No => {
                    return Err(format!(
                        "ADD `{url}` fetches from the platform registry over HTTP, around its namespaces: \
                         use FROM or COPY --from with your team's own image, `{}/…`",
                        self.own()
                    ));
                }
                Word::Unknown { known, var, written } if self.scope.url_could_reach(&known) => {
                    return Err(unknown_message(&written, &var, "ADD", &self.own()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn arg(&mut self, words: &[String], escape: char) {
        for word in words {
            let (name, default) = match word.split_once('=') {
                Some((n, d)) => (n.to_owned(), Some(d)),
                None => (word.clone(), None),
            };
            if self.stage.is_some() {
                // A stage's ARG may be overridden by its base image's ENV: left unknown.
                continue;
            }
            let value = match (self.build_args.get(&name), default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(d)) => match expand(d, escape, &|n| self.global_value(n)) {
                    Word::Known(v) => Some(v),
                    Word::Unknown { .. } => None,
                },
                (None, None) => None,
            };
            self.global.insert(name, value);
        }
    }

    fn env(&mut self, rest: &str, words: &[String], escape: char) {
        let pairs: Vec<(String, String)> = match words.first() {
            Some(first) if first.contains('=') => words
                .iter()
                .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect(),
            Some(key) => {
                let value = rest.trim_start()[key.len()..].trim();
                vec![(key.clone(), value.to_owned())]
            }
            None => Vec::new(),
        };
        for (key, value) in pairs {
            let value = self.expand_in_stage(&value, escape);
            if let Some(stage) = &mut self.stage {
                match value {
                    Word::Known(v) => {
                        stage.insert(key, v);
                    }
                    Word::Unknown { .. } => {
                        stage.remove(&key);
                    }
                }
            }
        }
    }

    fn global_value(&self, name: &str) -> Option<String> {
        self.global.get(name).cloned().flatten()
    }

    fn expand_in_stage(&self, word: &str, escape: char) -> Word {
        let env = self.stage.clone().unwrap_or_default();
        expand(word, escape, &|name| env.get(name).cloned())
    }

    /// A `--from` value: a stage (its name or index) or an image.
    fn stage_or_image(&mut self, value: &Word, what: &str) -> Result<(), String> {
        if let Word::Known(v) = value
            && (self.stages.contains(&v.to_ascii_lowercase()) || v.bytes().all(|b| b.is_ascii_digit()))
        {
            return Ok(());
        }
        self.image(value, what)
    }

    fn image(&mut self, image: &Word, what: &str) -> Result<(), String> {
        self.checked += 1;
        match image {
            Word::Known(i) if i == "scratch" || self.stages.contains(&i.to_ascii_lowercase()) => Ok(()),
            Word::Known(i) => self.scope.check(self.team, i).map_err(|e| e.to_string()),
            Word::Unknown { known, var, written } => match self.scope.check_partial(self.team, known) {
                Ok(()) => Ok(()),
                Err(Some(trespass)) => Err(format!("`{written}`: {trespass}")),
                Err(None) => Err(unknown_message(written, var, what, &self.own())),
            },
        }
    }

    fn own(&self) -> String {
        format!("{}/{}", self.scope.prefix(), self.team)
    }
}

/// BuildKit's rule for stage names: `[a-z][a-z0-9-_.]*`.
fn is_stage_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

fn unknown_message(written: &str, var: &str, what: &str, own: &str) -> String {
    format!(
        "{what} `{written}`: the value of `{var}` is not known before the build (a global ARG needs a default \
         or a build arg in source.dockerfile.build_args; inside a stage only ENV set there counts, as the base \
         image may set any variable), and with it the reference could name another team's repository in the \
         platform registry: write it out, or give `{var}` a value Kato can see; a team can only use its own, \
         `{own}/…`"
    )
}

fn written(w: &Word) -> String {
    match w {
        Word::Known(t) => t.clone(),
        Word::Unknown { written, .. } => written.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dockerfile: &str, args: &[(&str, &str)]) -> Result<usize, Refusal> {
        let scope = PlatformScope::new("127.0.0.1:7071", None);
        let args = args.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        check(dockerfile, &args, &scope, "teama")
    }

    fn refused(dockerfile: &str, args: &[(&str, &str)]) -> Refusal {
        run(dockerfile, args).expect_err(dockerfile)
    }

    #[test]
    fn a_teams_own_images_and_other_registries_pass() {
        let ok = "FROM 127.0.0.1:7071/teama/base:1 AS build\nRUN make\n\
                  FROM docker.io/library/alpine\nCOPY --from=build /out /out\n\
                  COPY --from=127.0.0.1:7071/teama/tools /bin/t /bin/t\nCOPY --from=0 /a /a\n\
                  RUN --mount=type=bind,from=build,target=/b true\nADD https://example.com/x.tgz /x\n";
        assert_eq!(run(ok, &[]), Ok(4));
    }

    #[test]
    fn every_reference_into_another_team_is_refused_with_its_line() {
        for (dockerfile, line) in [
            ("FROM 127.0.0.1:7071/teamb/x\n", 1),
            ("FROM alpine\n\n# comment\nCOPY --from=localhost:7071/teamb/x / /\n", 4),
            (
                "FROM alpine\nRUN --mount=type=bind,from=127.0.0.1:7071/teamb/x,target=/m ls /m\n",
                2,
            ),
            ("FROM alpine\nONBUILD COPY --from=127.0.0.1:7071/teamb/x / /\n", 2),
            ("FROM alpine\nRUN echo \\\n  hi\nfrom \"127.0.0.1:7071/teamb/x\"\n", 4),
            ("FROM alpine AS a\nFROM a\nCOPY --from 127.0.0.1:7071/teamb/x / /\n", 3),
            ("FROM '127.0.0.1:7071/teamb/x'\n", 1),
            ("\u{feff}FROM 127.0.0.1:7071/teamb/x\n", 1),
            (
                "FROM alpine AS 127.0.0.1:7071/teamb/x\nFROM 127.0.0.1:7071/teamb/x\n",
                2,
            ),
            ("FROM 127.0.0.1:7071/team\\b/x\n", 1),
            (
                "FROM alpine\nADD --chown=1 [\"http://localhost:7071/v2/teamb/x/manifests/1\", \"/x\"]\n",
                2,
            ),
        ] {
            let r = refused(dockerfile, &[]);
            assert_eq!(r.line, line, "{dockerfile}: {r:?}");
            assert!(
                r.why.contains("team teamb's repository") || r.why.contains("fetches from the platform registry"),
                "{r:?}"
            );
        }
        let r = refused(
            "FROM alpine\nADD http://127.0.0.1:7071/v2/teamb/x/blobs/sha256:00 /x\n",
            &[],
        );
        assert!(r.why.contains("fetches from the platform registry"), "{r:?}");
        let r = refused("FROM alpine\nRUN --network=host true\n", &[]);
        assert!(r.why.contains("its own network"), "{r:?}");
    }

    #[test]
    fn args_and_build_args_are_substituted_as_the_builder_would() {
        let via_default = "ARG REG=127.0.0.1:7071\nARG TEAM=teamb\nFROM ${REG}/$TEAM/x\n";
        assert!(refused(via_default, &[]).why.contains("team teamb's"));
        assert_eq!(run(via_default, &[("TEAM", "teama")]), Ok(1));
        let via_build_arg = "ARG BASE=alpine\nFROM $BASE\n";
        assert_eq!(run(via_build_arg, &[]), Ok(1));
        let r = refused(via_build_arg, &[("BASE", "127.0.0.1:7071/teamb/x")]);
        assert_eq!(r.instruction, "FROM $BASE");
        assert!(
            refused("ARG T\nFROM 127.0.0.1:7071/${T:-teamb}/x\n", &[])
                .why
                .contains("teamb")
        );
        assert!(
            refused("ARG T=teama\nFROM 127.0.0.1:7071/${T:+teamb}/x\n", &[])
                .why
                .contains("teamb")
        );
        assert_eq!(run("ARG V=3.12\nFROM python:${V}-slim\n", &[]), Ok(1));
        let quoted = "FROM alpine\nENV SRC='127.0.0.1:7071/teamb/x'\nCOPY --from=\"$SRC\" / /\n";
        assert!(refused(quoted, &[]).why.contains("teamb"));
        let escaped = "# escape=`\nFROM alpine\nRUN echo `\n  x\nCOPY --from=127.0.0.1:7071/teamb/x / /\n";
        assert_eq!(refused(escaped, &[]).line, 5);
    }

    #[test]
    fn unknown_values_that_could_reach_another_team_are_refused() {
        for dockerfile in [
            "FROM $BASE\n",
            "ARG BASE\nFROM $BASE\n",
            "ARG T\nFROM 127.0.0.1:7071/$T/x\n",
            "FROM alpine\nARG SRC=alpine\nCOPY --from=$SRC / /\n",
            "FROM alpine\nADD $URL /x\n",
            "FROM alpine\nRUN --mount=$M true\n",
        ] {
            let r = refused(dockerfile, &[]);
            assert!(r.why.contains("is not known before the build"), "{dockerfile}: {r:?}");
        }
        for fine in [
            "FROM docker.io/library/alpine:$TAG\n",
            "FROM 127.0.0.1:7071/teama/$IMAGE\n",
            "FROM alpine\nENV SRC=build\nFROM alpine AS build\nFROM alpine\nADD files/$NAME /x\n",
            "FROM alpine\nENV S=docker.io/library/busybox\nCOPY --from=$S / /\n",
        ] {
            assert!(run(fine, &[]).is_ok(), "{fine}: {:?}", run(fine, &[]));
        }
        let r = refused("ARG T\nFROM 127.0.0.1:7071/teamb/$T\n", &[]);
        assert!(r.why.contains("team teamb's repository"), "{r:?}");
    }
}
