//! podman's `k8s-file` log format (the CRI one) turned into what `podman logs` prints.
//!
//! Each record is `<RFC3339Nano time> <stdout|stderr> <tags> <content>\n`; the tag `F` ends a
//! line and `P` marks a piece continued by the stream's next record. stdout and stderr share the
//! file, so lines come out in file order; each stream's pieces are joined on their own.

use bytes::Bytes;

/// One record's stream: stdout or stderr.
const STREAMS: usize = 2;

/// Turns the file's bytes, read in chunks of any size, into whole lines.
#[derive(Debug, Default)]
pub(super) struct CriParser {
    /// The start of a record a read cut off.
    carry: Vec<u8>,
    /// Per stream, the pieces of a line not ended yet.
    pending: [Vec<u8>; STREAMS],
    /// Reading began inside the file: per stream, the first line may have begun earlier.
    unsure: [bool; STREAMS],
    /// Reading began inside the file: bytes up to the first record end belong to a cut record.
    skip_cut: bool,
}

/// A line as `podman logs` prints it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Line {
    pub(super) text: Bytes,
    /// The line may have begun before where reading began (then `text` is only its end).
    pub(super) cut: bool,
}

impl CriParser {
    /// A parser for bytes from the file's start.
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// A parser for bytes from inside the file: a line that may have begun earlier is marked cut.
    pub(super) fn mid_file() -> Self {
        Self {
            unsure: [true; STREAMS],
            skip_cut: true,
            ..Self::default()
        }
    }

    /// True while a stream's first line is unfinished and began before where reading began.
    pub(super) fn has_cut_pending(&self) -> bool {
        (0..STREAMS).any(|s| self.unsure[s] && !self.pending[s].is_empty())
    }

    /// Parses `data`, appending each line that ends in it to `out`.
    pub(super) fn push(&mut self, mut data: &[u8], out: &mut Vec<Line>) {
        if self.skip_cut {
            match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    data = &data[i + 1..];
                    self.skip_cut = false;
                }
                None => return,
            }
        }
        while let Some(i) = data.iter().position(|b| *b == b'\n') {
            let record = if self.carry.is_empty() {
                &data[..i]
            } else {
                self.carry.extend_from_slice(&data[..i]);
                &self.carry[..]
            };
            let parsed = match parse_record(record) {
                Some((stream, full, content)) => Ok((stream, full, content.to_vec())),
                // Not a record (a file conmon did not write): shown as it is.
                None => Err(record.to_vec()),
            };
            self.carry.clear();
            data = &data[i + 1..];
            match parsed {
                Ok((stream, full, content)) => self.piece(stream, full, &content, out),
                Err(mut raw) => {
                    raw.push(b'\n');
                    out.push(Line {
                        text: Bytes::from(raw),
                        cut: false,
                    });
                }
            }
        }
        self.carry.extend_from_slice(data);
    }

    /// The lines still unfinished when the log ended, as `podman logs` prints them: unended.
    pub(super) fn finish(&mut self, out: &mut Vec<Line>) {
        for s in 0..STREAMS {
            let piece = std::mem::take(&mut self.pending[s]);
            if !piece.is_empty() {
                out.push(Line {
                    text: Bytes::from(piece),
                    cut: self.unsure[s],
                });
            }
        }
    }

    fn piece(&mut self, stream: usize, full: bool, content: &[u8], out: &mut Vec<Line>) {
        self.pending[stream].extend_from_slice(content);
        if !full {
            return;
        }
        let mut text = std::mem::take(&mut self.pending[stream]);
        text.push(b'\n');
        out.push(Line {
            text: Bytes::from(text),
            cut: std::mem::take(&mut self.unsure[stream]),
        });
    }
}

/// `(stream, ends a line, content)` of one record without its newline.
fn parse_record(record: &[u8]) -> Option<(usize, bool, &[u8])> {
    let mut fields = record.splitn(4, |b| *b == b' ');
    let _time = fields.next().filter(|t| !t.is_empty())?;
    let stream = match fields.next()? {
        b"stdout" => 0,
        b"stderr" => 1,
        _ => return None,
    };
    // Tags are `:`-separated; `P` is the only one that changes the text.
    let full = !fields.next()?.split(|b| *b == b':').any(|t| t == b"P");
    Some((stream, full, fields.next().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-12-03T17:04:26.243690643+00:00";

    fn texts(parser: &mut CriParser, data: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        parser.push(data, &mut out);
        out.iter()
            .map(|l| String::from_utf8_lossy(&l.text).into_owned())
            .collect()
    }

    #[test]
    fn full_lines_of_both_streams_keep_file_order() {
        let file = format!("{T} stdout F hello\n{T} stderr F oops\n{T} stdout F \n{T} stdout F a b  c\n");
        assert_eq!(
            texts(&mut CriParser::new(), file.as_bytes()),
            ["hello\n", "oops\n", "\n", "a b  c\n"]
        );
    }

    #[test]
    fn partial_records_join_per_stream() {
        let file = format!("{T} stdout P part\n{T} stderr F err\n{T} stdout P ia\n{T} stdout F l\n");
        assert_eq!(texts(&mut CriParser::new(), file.as_bytes()), ["err\n", "partial\n"]);
    }

    #[test]
    fn an_unended_last_line_is_printed_when_the_log_ends() {
        let mut parser = CriParser::new();
        assert!(texts(&mut parser, format!("{T} stdout P no newline\n").as_bytes()).is_empty());
        let mut out = Vec::new();
        parser.finish(&mut out);
        assert_eq!(&out[0].text[..], b"no newline");
    }

    #[test]
    fn a_record_cut_by_a_read_is_completed_by_the_next() {
        let file = format!("{T} stdout F first\n{T} stderr F second\n");
        for at in 0..file.len() {
            let mut parser = CriParser::new();
            let mut got = texts(&mut parser, &file.as_bytes()[..at]);
            got.extend(texts(&mut parser, &file.as_bytes()[at..]));
            assert_eq!(got, ["first\n", "second\n"], "cut at {at}");
        }
    }

    #[test]
    fn reading_from_inside_the_file_marks_what_may_have_begun_before() {
        let file = format!("{T} stdout P be\n{T} stdout F gun\n{T} stderr F e\n{T} stdout F next\n");
        // From inside the first record: its rest is skipped, the line it began is marked cut.
        let mut parser = CriParser::mid_file();
        let mut out = Vec::new();
        parser.push(&file.as_bytes()[5..], &mut out);
        let got: Vec<(&[u8], bool)> = out.iter().map(|l| (&l.text[..], l.cut)).collect();
        assert_eq!(got, [(&b"gun\n"[..], true), (b"e\n", true), (b"next\n", false)]);
    }

    #[test]
    fn something_that_is_not_a_record_is_shown_as_it_is() {
        assert_eq!(texts(&mut CriParser::new(), b"garbage\n"), ["garbage\n"]);
    }
}
