//! The values a template computes with: a small stand-in for Go's `reflect.Value`.
//!
//! Go's `text/template` walks arbitrary Go data through reflection. Here the data is a fixed
//! set of objects (the request-log input, see [`crate::request_log::data`]) that describe
//! themselves through the [`Object`] trait: their Go type name, their fields and methods, and
//! how `fmt` prints them. Scalars are plain variants of [`Value`].
//!
//! Strings are byte strings, as in Go: header values may hold obs-text that is not UTF-8, and
//! `len`, `index`, `js` and `%x` all work on bytes.

use std::borrow::Cow;
use std::fmt;

/// The Go integer types the data model produces. The kind matters for `%T`, for error
/// messages and for comparisons (`uint8` is unsigned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntType {
    /// `int` (64-bit, as on every platform Knative ships for).
    Int,
    /// `int64` (`ContentLength`).
    Int64,
    /// `uint8`, what `index` yields on a string.
    Uint8,
}

impl IntType {
    /// The Go spelling of the type.
    pub fn name(self) -> &'static str {
        match self {
            IntType::Int => "int",
            IntType::Int64 => "int64",
            IntType::Uint8 => "uint8",
        }
    }

    /// Whether Go's `reflect` would call this an unsigned kind.
    pub fn is_unsigned(self) -> bool {
        matches!(self, IntType::Uint8)
    }
}

/// One value during template execution.
#[derive(Clone)]
pub enum Value<'a> {
    /// Go's invalid `reflect.Value`: a missing map key, an untyped `nil`, a nil interface.
    /// A template action prints it as `<no value>`, `fmt` as `<nil>`.
    Nil,
    /// `bool`.
    Bool(bool),
    /// Any of the integer types in [`IntType`].
    Int(i64, IntType),
    /// `float64`.
    Float(f64),
    /// `string`, as bytes.
    Str(Cow<'a, [u8]>),
    /// `[]string` (header values, `TransferEncoding`). Go prints nil and empty alike.
    Strings(Vec<Cow<'a, [u8]>>),
    /// A pointer to a struct, or a map, described by the data model.
    Obj(&'a dyn Object<'a>),
}

impl<'a> Value<'a> {
    /// A borrowed string value.
    pub fn str(s: &'a [u8]) -> Self {
        Value::Str(Cow::Borrowed(s))
    }

    /// An `int`.
    pub fn int(i: i64) -> Self {
        Value::Int(i, IntType::Int)
    }

    /// The Go type name, as `%T` and error messages print it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_, t) => t.name(),
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::Strings(_) => "[]string",
            Value::Obj(o) => o.type_name(),
        }
    }

    /// Go's `isTrue`: the zero value of a type is false, everything else true.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i, _) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::Strings(v) => !v.is_empty(),
            Value::Obj(o) => match o.shape() {
                Shape::Struct => true,
                Shape::NilPointer => false,
                Shape::Map => o.map_len() > 0,
            },
        }
    }

    /// Whether this is Go's `nil` of some type (an invalid value, a nil pointer).
    pub fn is_nil(&self) -> bool {
        match self {
            Value::Nil => true,
            Value::Obj(o) => o.shape() == Shape::NilPointer,
            _ => false,
        }
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("Nil"),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Int(i, t) => write!(f, "Int({i}, {})", t.name()),
            Value::Float(x) => write!(f, "Float({x})"),
            Value::Str(s) => write!(f, "Str({:?})", String::from_utf8_lossy(s)),
            Value::Strings(v) => {
                let v: Vec<_> = v.iter().map(|s| String::from_utf8_lossy(s)).collect();
                write!(f, "Strings({v:?})")
            }
            Value::Obj(o) => write!(f, "Obj({})", o.type_name()),
        }
    }
}

/// What kind of Go value an [`Object`] is, as far as templates and `fmt` care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A non-nil pointer to a struct: fields by name, printed `&{…}` by `fmt`.
    Struct,
    /// A nil pointer to a struct: fields fail with "nil pointer evaluating".
    NilPointer,
    /// A `map[string][]string` (`http.Header`, `url.Values`): field syntax looks keys up.
    Map,
}

/// The Go type of a method parameter, for argument checking as `text/template` does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// `string`.
    Str,
    /// `int`.
    Int,
}

impl Param {
    /// The Go spelling of the type.
    pub fn name(self) -> &'static str {
        match self {
            Param::Str => "string",
            Param::Int => "int",
        }
    }
}

/// What a name resolves to on an object, in the order Go's `evalField` tries: methods first,
/// then struct fields or map keys.
pub enum Member<'a> {
    /// A method taking these parameters; call it with [`Object::call`].
    Method(&'static [Param]),
    /// A struct field, or the entry of a map ([`Value::Nil`] for a missing key).
    Field(Value<'a>),
    /// Go's type has this field or method but this engine does not model it (e.g.
    /// `Request.Body`): execution fails rather than print something Go would not.
    Unsupported,
    /// Go's type has no such field or method.
    NotFound,
}

/// A Go object of the template's data model.
pub trait Object<'a> {
    /// The Go type, e.g. `*http.Request`.
    fn type_name(&self) -> &'static str;

    /// Struct pointer, nil pointer or map.
    fn shape(&self) -> Shape {
        Shape::Struct
    }

    /// Resolves `name` (a field, map key or method).
    fn member(&'a self, name: &str) -> Member<'a>;

    /// Calls a method that [`Object::member`] reported, with arguments already checked
    /// against its parameter types. An `Err` is the method's own error.
    fn call(&'a self, name: &str, args: &[Value<'a>]) -> Result<Value<'a>, String> {
        let _ = args;
        Err(format!("method {name} is not callable"))
    }

    /// `fmt.Stringer`: the `String()` result, when the type has that method. `fmt` and
    /// template printing use it instead of the fields.
    fn stringer(&'a self) -> Option<Cow<'a, [u8]>> {
        None
    }

    /// The struct's fields in declaration order, for printing `{…}`; `None` when this engine
    /// cannot print the value as Go would (pointers, channels and functions inside).
    fn fields(&'a self) -> Option<Vec<(&'static str, Value<'a>)>> {
        None
    }

    /// For maps: the number of entries.
    fn map_len(&self) -> usize {
        0
    }

    /// For maps: the entry for `key` (exact match, as Go's map index is).
    fn map_get(&'a self, key: &[u8]) -> Option<Value<'a>> {
        let _ = key;
        None
    }

    /// For maps: all entries, sorted by key as `fmt` and `range` order them.
    fn map_entries(&'a self) -> Vec<(Cow<'a, [u8]>, Value<'a>)> {
        Vec::new()
    }
}
