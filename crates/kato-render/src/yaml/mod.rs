//! Multi-document YAML output: a small block-style emitter driven by the objects' serde output.
//!
//! serde_yaml (libyaml) spent ~0.5 ms per workload; this writes the same layout (two-space
//! indent, sequences flush with their key) straight into one buffer. A string is written plain
//! only when a YAML 1.1 or 1.2 reader (kubectl, PyYAML, serde_yaml) reads it back as the same
//! string; otherwise single-quoted, or double-quoted with escapes when it holds a line break or
//! another character YAML does not print. The rendered objects' hot fields are written by
//! `direct` through the same `Compound` steps; the rest goes through serde.

use std::fmt::{self, Write as _};

use serde::ser::{self, Impossible, Serialize, SerializeMap, SerializeSeq, SerializeStruct};

use self::key::KeyWriter;
use self::scalar::{write_int, write_string};
use crate::Object;

mod direct;
mod key;
mod plan;
mod scalar;

/// How the objects are written: straight from their fields (the default), or through serde (to
/// check the first against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    Direct,
    Serde,
}

pub(crate) fn to_yaml(objects: &[Object], writer: Writer) -> String {
    let mut out = String::with_capacity(objects.len() * 2048);
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let written = match writer {
            Writer::Direct => direct::object(&mut out, o),
            Writer::Serde => write_document(&mut out, o),
        };
        written.expect("Kubernetes objects are maps of strings, numbers and lists");
    }
    out
}

/// The YAML of a plan's objects, as [`to_yaml`] writes them.
pub(crate) fn write_plan(p: &crate::plan::Plan<'_>) -> String {
    plan::write(p)
}

/// Appends one YAML document (without a `---` line) for `value`.
pub(crate) fn write_document<T: Serialize + ?Sized>(out: &mut String, value: &T) -> Result<(), Error> {
    value.serialize(Emitter { out, pos: Pos::Root })
}

/// A value serde can produce but this emitter does not write (enum variants, tuples, non-text
/// map keys): none occurs in Kubernetes objects.
#[derive(Debug)]
pub(crate) struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

fn unsupported<T>(what: &str) -> Result<T, Error> {
    Err(Error(format!("the YAML emitter does not write {what}")))
}

/// Where the value being written stands.
#[derive(Clone, Copy)]
enum Pos {
    /// A whole document.
    Root,
    /// After `key:` of a mapping whose keys are at `indent`.
    MapValue { indent: usize },
    /// After `- ` of a sequence whose dashes are at `indent`.
    SeqItem { indent: usize },
}

impl Pos {
    /// The indent of a mapping's keys written here.
    fn map_indent(self) -> usize {
        match self {
            Pos::Root => 0,
            Pos::MapValue { indent } | Pos::SeqItem { indent } => indent + 2,
        }
    }
    /// The indent of a sequence's dashes written here (flush with a parent key).
    fn seq_indent(self) -> usize {
        match self {
            Pos::Root => 0,
            Pos::MapValue { indent } => indent,
            Pos::SeqItem { indent } => indent + 2,
        }
    }
}

fn indent(out: &mut String, n: usize) {
    const SPACES: &str = "                                                                ";
    let mut n = n;
    while n > SPACES.len() {
        out.push_str(SPACES);
        n -= SPACES.len();
    }
    out.push_str(&SPACES[..n]);
}

struct Emitter<'o> {
    out: &'o mut String,
    pos: Pos,
}

impl<'o> Emitter<'o> {
    fn scalar_prefix(&mut self) {
        if let Pos::MapValue { .. } = self.pos {
            self.out.push(' ');
        }
    }
    fn raw_scalar(self, text: &str) -> Result<(), Error> {
        let Emitter { out, pos } = self;
        if let Pos::MapValue { .. } = pos {
            out.push(' ');
        }
        out.push_str(text);
        out.push('\n');
        Ok(())
    }
    fn display_scalar(mut self, v: impl fmt::Display) -> Result<(), Error> {
        self.scalar_prefix();
        writeln!(self.out, "{v}").map_err(|e| Error(e.to_string()))
    }
    fn int_scalar(mut self, v: impl Into<i128>) -> Result<(), Error> {
        self.scalar_prefix();
        write_int(self.out, v.into());
        self.out.push('\n');
        Ok(())
    }
    fn compound(self) -> Compound<'o> {
        Compound {
            out: self.out,
            pos: self.pos,
            count: 0,
        }
    }
}

/// A mapping or sequence being written; `count` entries so far.
struct Compound<'o> {
    out: &'o mut String,
    pos: Pos,
    count: usize,
}

impl<'o> Compound<'o> {
    /// Starts the next entry at `at`: the first entry of a nested block goes on a new line, the
    /// first entry of a sequence item or document goes where the cursor is.
    fn start_entry(&mut self, at: usize) {
        if self.count == 0 {
            if let Pos::MapValue { .. } = self.pos {
                self.out.push('\n');
                indent(self.out, at);
            }
        } else {
            indent(self.out, at);
        }
        self.count += 1;
    }

    fn key(&mut self, key: &str) {
        self.start_entry(self.pos.map_indent());
        write_string(self.out, key);
        self.out.push(':');
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let pos = Pos::MapValue {
            indent: self.pos.map_indent(),
        };
        value.serialize(Emitter { out: self.out, pos })
    }

    /// A mapping or sequence to write at the document's top level.
    fn document(out: &'o mut String) -> Self {
        Compound {
            out,
            pos: Pos::Root,
            count: 0,
        }
    }

    /// A field whose name needs no quoting (a Kubernetes field name), then its value.
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.field_key(key);
        self.value(value)
    }

    fn field_key(&mut self, key: &'static str) {
        self.start_entry(self.pos.map_indent());
        self.out.push_str(key);
        self.out.push(':');
    }

    fn opt_field<T: Serialize>(&mut self, key: &'static str, value: &Option<T>) -> Result<(), Error> {
        match value {
            Some(v) => self.field(key, v),
            None => Ok(()),
        }
    }

    /// A text field, written as `serialize_str` would.
    fn str_field(&mut self, key: &'static str, value: &str) {
        self.field_key(key);
        self.out.push(' ');
        write_string(self.out, value);
        self.out.push('\n');
    }

    fn opt_str_field(&mut self, key: &'static str, value: &Option<String>) {
        if let Some(v) = value {
            self.str_field(key, v);
        }
    }

    /// A text item of this sequence.
    fn str_item(&mut self, value: &str) {
        self.start_entry(self.pos.seq_indent());
        self.out.push_str("- ");
        write_string(self.out, value);
        self.out.push('\n');
    }

    /// A map entry with a text value.
    fn str_entry(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push(' ');
        write_string(self.out, value);
        self.out.push('\n');
    }

    /// The mapping or sequence that is the value of the key just written.
    fn nested(&mut self) -> Compound<'_> {
        Compound {
            pos: Pos::MapValue {
                indent: self.pos.map_indent(),
            },
            out: self.out,
            count: 0,
        }
    }

    /// Starts the next item of this sequence; returns the item's mapping.
    fn item(&mut self) -> Compound<'_> {
        let at = self.pos.seq_indent();
        self.start_entry(at);
        self.out.push_str("- ");
        Compound {
            out: self.out,
            pos: Pos::SeqItem { indent: at },
            count: 0,
        }
    }

    fn end(self, empty: &str) -> Result<(), Error> {
        if self.count == 0 {
            Emitter {
                out: self.out,
                pos: self.pos,
            }
            .raw_scalar(empty)?;
        }
        Ok(())
    }
}

impl SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let at = self.pos.seq_indent();
        self.start_entry(at);
        self.out.push_str("- ");
        value.serialize(Emitter {
            out: self.out,
            pos: Pos::SeqItem { indent: at },
        })
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self, "[]")
    }
}

impl SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.start_entry(self.pos.map_indent());
        key.serialize(KeyWriter { out: self.out })?;
        self.out.push(':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.value(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self, "{}")
    }
}

impl SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.key(key);
        self.value(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self, "{}")
    }
}

impl<'o> ser::Serializer for Emitter<'o> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'o>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Compound<'o>;
    type SerializeStruct = Compound<'o>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.raw_scalar(if v { "true" } else { "false" })
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.int_scalar(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.int_scalar(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.int_scalar(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.int_scalar(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.int_scalar(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.int_scalar(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.int_scalar(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.int_scalar(v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if v.is_nan() {
            self.raw_scalar(".nan")
        } else if v.is_infinite() {
            self.raw_scalar(if v > 0.0 { ".inf" } else { "-.inf" })
        } else {
            self.display_scalar(format_args!("{v:?}"))
        }
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(mut self, v: &str) -> Result<(), Error> {
        self.scalar_prefix();
        write_string(self.out, v);
        self.out.push('\n');
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        unsupported("raw bytes")
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.raw_scalar("null")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.raw_scalar("null")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.raw_scalar("null")
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        unsupported("enum variants with data")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'o>, Error> {
        Ok(self.compound())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        unsupported("tuples")
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Error> {
        unsupported("tuple structs")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        unsupported("enum variants with data")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'o>, Error> {
        Ok(self.compound())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'o>, Error> {
        Ok(self.compound())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        unsupported("enum variants with data")
    }
}
