//! The first pass over a publish request: is it JSON, and which members
//! does its top-level object have? Shared by every publish path.
//!
//! One call of serde_json over the whole text, so a syntax error anywhere
//! (NaN, a trailing comma, text after the value) is found before any rule
//! about fields is applied. Member values are kept as [`RawValue`]s, which
//! serde_json skips without recursion: no nesting, however deep, makes the
//! shard thread recurse. The values are judged afterwards by `parse.rs`.
//!
//! Stateless; runs on the shard that reads the request.

use std::fmt;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use crate::input::sanitize;
use crate::protocol::common::{ApiCode, ApiError};

/// A member name the publish API knows. What each place allows is decided
/// in `parse.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Channel,
    Data,
    Key,
    Kind,
    Messages,
    Action,
    Token,
}

impl Field {
    /// Every known field, in the order of the enum.
    pub(super) const ALL: [Field; 7] = [
        Field::Channel,
        Field::Data,
        Field::Key,
        Field::Kind,
        Field::Messages,
        Field::Action,
        Field::Token,
    ];

    /// The member name as written.
    pub(super) fn name(self) -> &'static str {
        match self {
            Field::Channel => "channel",
            Field::Data => "data",
            Field::Key => "key",
            Field::Kind => "kind",
            Field::Messages => "messages",
            Field::Action => "action",
            Field::Token => "token",
        }
    }
}

/// The members of a top-level object: the known fields as raw values, and
/// the first problem with the others.
#[derive(Debug, Default)]
pub(super) struct Members<'a> {
    values: [Option<&'a RawValue>; Field::ALL.len()],
    /// The first known field that appeared twice.
    pub(super) repeated: Option<Field>,
    /// The first member with a name no place allows (printable, cut to 64 bytes).
    pub(super) unknown: Option<String>,
}

impl<'a> Members<'a> {
    /// The raw value of `field`, if present.
    pub(super) fn get(&self, field: Field) -> Option<&'a RawValue> {
        self.values[field as usize]
    }

    /// The first present field among `fields`.
    pub(super) fn any_of(&self, fields: &[Field]) -> Option<Field> {
        fields.iter().copied().find(|f| self.get(*f).is_some())
    }
}

/// What a JSON text holds at its top.
#[derive(Debug)]
pub(super) enum Top<'a> {
    /// An object, with its members.
    Object(Members<'a>),
    /// Anything else, named for a person: "an array", "a number"…
    Other(&'static str),
}

/// Reads `json` as one JSON value: `INVALID_JSON` when it is not JSON.
pub(super) fn read_top(json: &[u8]) -> Result<Top<'_>, ApiError> {
    serde_json::from_slice(json)
        .map_err(|e| ApiError::new(ApiCode::InvalidJson, format!("not valid JSON: {e}")))
}

/// A member name: a known field or another name.
enum Name {
    Known(Field),
    Other(String),
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            // Escaped names arrive decoded: `"\u0063hannel"` is `channel`.
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Name, E> {
                Ok(match Field::ALL.iter().find(|f| f.name() == name) {
                    Some(field) => Name::Known(*field),
                    None => Name::Other(sanitize(name, 64).into_owned()),
                })
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
        let mut members = Members::default();
        // Every member is read to the end, so a syntax error after a
        // problem with fields is still reported as a syntax error.
        while let Some(name) = map.next_key::<Name>()? {
            let value: &'de RawValue = map.next_value()?;
            match name {
                Name::Known(field) => {
                    let slot = &mut members.values[field as usize];
                    if slot.is_some() {
                        members.repeated.get_or_insert(field);
                    }
                    *slot = Some(value);
                }
                Name::Other(name) => {
                    members.unknown.get_or_insert(name);
                }
            }
        }
        Ok(Top::Object(members))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top<'de>, A::Error> {
        while seq.next_element::<&'de RawValue>()?.is_some() {}
        Ok(Top::Other("an array"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Top<'de>, E> {
        Ok(Top::Other("null"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top<'de>, E> {
        Ok(Top::Other("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top<'de>, E> {
        Ok(Top::Other("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top<'de>, E> {
        Ok(Top::Other("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top<'de>, E> {
        Ok(Top::Other("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Top<'de>, E> {
        Ok(Top::Other("a string"))
    }
}

/// The first `keep` elements of the JSON array `array` (already read by
/// [`read_top`]), and how many it holds: a batch over its limit is
/// counted, not collected.
pub(super) fn read_array(
    array: &RawValue,
    keep: usize,
) -> Result<(Vec<&RawValue>, usize), ApiError> {
    let mut de = serde_json::Deserializer::from_str(array.get());
    ArraySeed { keep }
        .deserialize(&mut de)
        .map_err(|e| ApiError::new(ApiCode::InvalidJson, format!("not valid JSON: {e}")))
}

struct ArraySeed {
    keep: usize,
}

impl<'de> DeserializeSeed<'de> for ArraySeed {
    type Value = (Vec<&'de RawValue>, usize);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArraySeed {
    type Value = (Vec<&'de RawValue>, usize);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kept = Vec::new();
        while kept.len() < self.keep {
            match seq.next_element::<&'de RawValue>()? {
                Some(element) => kept.push(element),
                None => {
                    let count = kept.len();
                    return Ok((kept, count));
                }
            }
        }
        let mut count = kept.len();
        // Skipped without recursion, like a RawValue.
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok((kept, count))
    }
}

/// What a raw JSON value is, named for a person ("null", "a number"…), from
/// its first byte.
pub(super) fn what(value: &RawValue) -> &'static str {
    match value.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(json: &str) -> Members<'_> {
        match read_top(json.as_bytes()).unwrap() {
            Top::Object(members) => members,
            Top::Other(what) => panic!("{json} is {what}"),
        }
    }

    #[test]
    fn known_fields_are_kept_raw_and_other_names_and_repeats_noted() {
        let m = members(r#"{"channel":"t1","data": {"a":[1]} ,"x":1,"y":2}"#);
        assert_eq!(m.get(Field::Channel).unwrap().get(), r#""t1""#);
        assert_eq!(m.get(Field::Data).unwrap().get(), r#"{"a":[1]}"#);
        assert!(m.get(Field::Key).is_none());
        assert_eq!((m.repeated, m.unknown.as_deref()), (None, Some("x")));
        let m = members(r#"{"channel":"t1","\u0063hannel":"t2","kind":1,"kind":2}"#);
        assert_eq!(m.repeated, Some(Field::Channel));
        assert_eq!(m.get(Field::Channel).unwrap().get(), r#""t2""#);
    }

    #[test]
    fn syntax_errors_anywhere_are_invalid_json() {
        for text in [
            "",
            " ",
            "{",
            r#"{"x":1,"data":NaN}"#,
            r#"{"data":Infinity}"#,
            r#"{"data":-Infinity}"#,
            r#"{"channel":"t1"} x"#,
            r#"{"channel":"t1",}"#,
            r#"[1,2"#,
            "{'a':1}",
        ] {
            let e = read_top(text.as_bytes()).unwrap_err();
            assert_eq!(e.code, ApiCode::InvalidJson, "{text}: {e:?}");
        }
        assert!(read_top(b"{\"a\":\"\xff\"}").is_err());
    }

    #[test]
    fn other_values_are_named() {
        for (text, name) in [
            ("[1,{}]", "an array"),
            ("null", "null"),
            ("true", "a boolean"),
            ("-1.5", "a number"),
            (r#""s""#, "a string"),
        ] {
            assert!(
                matches!(read_top(text.as_bytes()), Ok(Top::Other(n)) if n == name),
                "{text}"
            );
        }
    }

    #[test]
    fn arrays_are_counted_past_what_is_kept() {
        let array: &RawValue = serde_json::from_str(r#"[{"a":1}, 2, [[3]], "4"]"#).unwrap();
        let (kept, count) = read_array(array, 2).unwrap();
        assert_eq!((kept.len(), count), (2, 4));
        assert_eq!(kept[0].get(), r#"{"a":1}"#);
        let (kept, count) = read_array(array, 10).unwrap();
        assert_eq!((kept.len(), count), (4, 4));
        assert_eq!(kept[3].get(), r#""4""#);
    }

    #[test]
    fn nesting_of_any_depth_is_read_without_recursion() {
        let deep = format!(
            r#"{{"data":{}{},"x":{}1{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000),
            "{\"a\":".repeat(50_000),
            "}".repeat(50_000)
        );
        let m = members(&deep);
        assert_eq!(m.get(Field::Data).unwrap().get().len(), 200_000);
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(read_top(deep.as_bytes()), Ok(Top::Other(_))));
    }
}
