//! Map keys of the YAML emitter: text only, quoted like any other string.

use serde::ser::{self, Impossible, Serialize};

use super::scalar::write_string;
use super::{Error, unsupported};

/// Writes a map key; Kubernetes maps are keyed by strings.
pub(super) struct KeyWriter<'o> {
    pub out: &'o mut String,
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_string(self.out, v);
        Ok(())
    }
    fn serialize_bool(self, _: bool) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_i8(self, _: i8) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_i16(self, _: i16) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_i32(self, _: i32) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_i64(self, _: i64) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_u8(self, _: u8) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_u16(self, _: u16) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_u32(self, _: u32) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_u64(self, _: u64) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_f32(self, _: f32) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_f64(self, _: f64) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_none(self) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        unsupported("non-text map keys")
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        unsupported("non-text map keys")
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
        unsupported("non-text map keys")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        unsupported("non-text map keys")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        unsupported("non-text map keys")
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Error> {
        unsupported("non-text map keys")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        unsupported("non-text map keys")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        unsupported("non-text map keys")
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        unsupported("non-text map keys")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        unsupported("non-text map keys")
    }
}
