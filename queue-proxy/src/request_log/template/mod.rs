//! A Go `text/template` engine, faithful for what request-log templates use.
//!
//! Knative operators write `logging.request-log-template` in Go's template language, so the
//! same text must print the same bytes here. No Rust crate is faithful to Go templates, hence
//! this small engine: [`lexer`] → [`parser`] (into [`node`]s) → [`exec`], with Go's
//! predefined functions in [`funcs`] and the value model in [`value`]. Each file mirrors its
//! Go counterpart in `text/template` and `text/template/parse`.
//!
//! Supported: text; `{{pipeline}}` actions with `|`; fields and field chains, methods with
//! arguments, map keys; `(pipeline).Field`; variables (`$`, `$x := …`, `$x = …`); string
//! (`"…"`, `` `…` ``), character, integer (decimal, `0x`, `0o`, `0b`, `_`) and float
//! literals, `true`, `false`, `nil`; `if`/`else if`/`else`, `with`/`else with`, `range` (over
//! slices, maps and integers, with `$i, $v :=`, `else`, `break`, `continue`); comments; trim
//! markers; and every predefined function (`and or not len index slice call print printf
//! println html js urlquery eq ne lt le gt ge`).
//!
//! Refused at parse time, with an error naming them: `define`/`template`/`block` (a request
//! log is one template) and complex or hexadecimal-float literals. Custom delimiters and
//! `missingkey` options do not exist for request logs and are not offered.

pub(crate) mod exec;
pub(crate) mod funcs;
pub(crate) mod lexer;
pub(crate) mod node;
pub(crate) mod parser;
pub mod value;

pub use exec::ExecError;
pub use parser::ParseError;
pub use value::{IntType, Member, Object, Param, Shape, Value};

/// A parsed template, ready to execute any number of times, from any number of threads.
#[derive(Debug)]
pub struct Template {
    name: String,
    source: String,
    root: node::List,
}

impl Template {
    /// Parses `text` as the template called `name` (the name appears in error messages, as
    /// `template.New(name)` does in Go).
    pub fn parse(name: &str, text: &str) -> Result<Template, ParseError> {
        let root = parser::parse(name, text)?;
        Ok(Template {
            name: name.to_owned(),
            source: text.to_owned(),
            root,
        })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Executes the template with `data` as dot, appending to `out`. On error `out` may hold
    /// partial output, as in Go; callers that need all-or-nothing render into a scratch
    /// buffer.
    pub fn execute<'a>(&'a self, data: Value<'a>, out: &mut Vec<u8>) -> Result<(), ExecError> {
        exec::execute(self, data, out)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A small struct-and-map world to exercise the executor without the request model.
    struct Root {
        rec: Rec,
        map: Map,
    }

    struct Rec {
        name: &'static str,
        code: i64,
        size: i64,
        ratio: f64,
        tags: Vec<&'static [u8]>,
    }

    struct Map(Vec<(&'static str, Vec<&'static str>)>);

    impl<'a> Object<'a> for Root {
        fn type_name(&self) -> &'static str {
            "*main.Root"
        }
        fn member(&'a self, name: &str) -> Member<'a> {
            match name {
                "Rec" => Member::Field(Value::Obj(&self.rec)),
                "Map" => Member::Field(Value::Obj(&self.map)),
                "Nothing" => Member::Field(Value::Nil),
                "Hidden" => Member::Unsupported,
                _ => Member::NotFound,
            }
        }
    }

    impl<'a> Object<'a> for Rec {
        fn type_name(&self) -> &'static str {
            "*main.Rec"
        }
        fn member(&'a self, name: &str) -> Member<'a> {
            match name {
                "Name" => Member::Field(Value::str(self.name.as_bytes())),
                "Code" => Member::Field(Value::int(self.code)),
                "Size" => Member::Field(Value::Int(self.size, IntType::Int64)),
                "Ratio" => Member::Field(Value::Float(self.ratio)),
                "Tags" => Member::Field(Value::Strings(
                    self.tags.iter().map(|t| Cow::Borrowed(*t)).collect(),
                )),
                "Greet" => Member::Method(&[Param::Str]),
                "Add" => Member::Method(&[Param::Int, Param::Int]),
                _ => Member::NotFound,
            }
        }
        fn call(&'a self, name: &str, args: &[Value<'a>]) -> Result<Value<'a>, String> {
            match (name, args) {
                ("Greet", [Value::Str(s)]) => {
                    let mut out = b"hello ".to_vec();
                    out.extend_from_slice(s);
                    Ok(Value::Str(Cow::Owned(out)))
                }
                ("Add", [Value::Int(a, _), Value::Int(b, _)]) if *b >= 0 => Ok(Value::int(a + b)),
                ("Add", _) => Err("negative".into()),
                _ => Err("no such method".into()),
            }
        }
        fn fields(&'a self) -> Option<Vec<(&'static str, Value<'a>)>> {
            Some(vec![
                ("Name", Value::str(self.name.as_bytes())),
                ("Code", Value::int(self.code)),
            ])
        }
    }

    impl<'a> Object<'a> for Map {
        fn type_name(&self) -> &'static str {
            "http.Header"
        }
        fn shape(&self) -> Shape {
            Shape::Map
        }
        fn member(&'a self, name: &str) -> Member<'a> {
            Member::Field(self.map_get(name.as_bytes()).unwrap_or(Value::Nil))
        }
        fn map_len(&self) -> usize {
            self.0.len()
        }
        fn map_get(&'a self, key: &[u8]) -> Option<Value<'a>> {
            self.0
                .iter()
                .find(|(k, _)| k.as_bytes() == key)
                .map(|(_, v)| {
                    Value::Strings(v.iter().map(|s| Cow::Borrowed(s.as_bytes())).collect())
                })
        }
        fn map_entries(&'a self) -> Vec<(Cow<'a, [u8]>, Value<'a>)> {
            let mut e: Vec<_> = self
                .0
                .iter()
                .map(|(k, _)| {
                    (
                        Cow::Borrowed(k.as_bytes()),
                        self.map_get(k.as_bytes()).unwrap(),
                    )
                })
                .collect();
            e.sort_by(|a, b| a.0.cmp(&b.0));
            e
        }
    }

    fn root() -> Root {
        Root {
            rec: Rec {
                name: "rev",
                code: 200,
                size: 4,
                ratio: 0.001234,
                tags: vec![b"a", b"b<c"],
            },
            map: Map(vec![
                ("Zeta", vec!["z"]),
                ("Accept", vec!["*/*", "text/html"]),
            ]),
        }
    }

    fn run(text: &str) -> Result<String, String> {
        let t = Template::parse("t", text).map_err(|e| e.to_string())?;
        let data = root();
        let mut out = Vec::new();
        t.execute(Value::Obj(&data), &mut out)
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn ok(text: &str) -> String {
        run(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn fields_methods_and_printing() {
        assert_eq!(
            ok("{{.Rec.Name}} {{.Rec.Code}} {{.Rec.Size}} {{.Rec.Ratio}}"),
            "rev 200 4 0.001234"
        );
        assert_eq!(
            ok("{{.Rec.Greet \"x\"}}|{{\"y\" | .Rec.Greet}}|{{.Rec.Add 1 2}}"),
            "hello x|hello y|3"
        );
        assert_eq!(
            ok("{{.Rec}}|{{print .Rec}}|{{printf \"%+v\" .Rec}}"),
            "{rev 200}|&{rev 200}|&{Name:rev Code:200}"
        );
        assert_eq!(
            ok("{{.Rec.Tags}}|{{.Map}}"),
            "[a b<c]|map[Accept:[*/* text/html] Zeta:[z]]"
        );
        assert_eq!(
            ok("{{.Nothing}}|{{.Map.Missing}}|{{.Map.Missing.Deeper}}"),
            "<no value>|<no value>|<no value>"
        );
        assert_eq!(
            ok("{{index .Map \"Accept\" 1}}|{{index .Map \"None\"}}|{{len .Map}}"),
            "text/html|[]|2"
        );
        assert_eq!(
            ok("{{js .Nothing}}|{{print .Nothing}}"),
            "\\u003Cno value\\u003E|<nil>"
        );
        assert_eq!(
            ok("{{with $x := .Rec}}{{$x.Name}}{{.Code}}{{end}}{{$.Rec.Name}}"),
            "rev200rev"
        );
    }

    #[test]
    fn pipelines_functions_and_literals() {
        assert_eq!(
            ok("{{.Rec.Name | printf \"%s-%d\" \"a\" | js}}"),
            "a-%!d(string\\u003Drev)"
        );
        assert_eq!(ok("{{printf \"%s-%d\" .Rec.Name .Rec.Code}}"), "rev-200");
        assert_eq!(ok("{{print 1 2 \"a\" 3.5 true nil}}"), "1 2a3.5 true <nil>");
        assert_eq!(ok("{{println \"a\" 1}}"), "a 1\n");
        assert_eq!(
            ok("{{html \"<a>\"}} {{urlquery \"a b&c\"}} {{js \"it's\"}}"),
            "&lt;a&gt; a+b%26c it\\'s"
        );
        assert_eq!(ok("{{js 1 2 \"x\"}}"), "1 2x");
        assert_eq!(
            ok("{{0x10}} {{1e3}} {{'a'}} {{-2}} {{`raw\\n`}} {{1_000}}"),
            "16 1000 97 -2 raw\\n 1000"
        );
        assert_eq!(
            ok("{{and 1 0 2}} {{and 1 2}} {{or 0 \"\" \"x\"}} {{or 0 \"\"}} {{not 0}}"),
            "0 2 x  true"
        );
        // and/or short-circuit: the failing call is never made.
        assert_eq!(
            ok("{{or 1 (.Rec.Add 1 -1)}} {{and 0 (.Rec.Add 1 -1)}}"),
            "1 0"
        );
        assert_eq!(
            ok("{{len \"héllo\"}} {{slice \"hello\" 1 3}} {{index \"ab\" 0}}"),
            "6 el 97"
        );
    }

    #[test]
    fn conditionals_and_comparisons() {
        assert_eq!(ok("{{if eq .Rec.Code 200}}ok{{else}}bad{{end}}"), "ok");
        assert_eq!(
            ok("{{if lt .Rec.Code 100}}a{{else if ge .Rec.Code 500}}b{{else}}c{{end}}"),
            "c"
        );
        assert_eq!(ok("{{if eq .Rec.Name \"x\" \"rev\"}}any{{end}}"), "any");
        assert_eq!(
            ok("{{if .Nothing}}y{{else}}n{{end}}{{if .Rec.Tags}}y{{end}}{{if .Rec}}s{{end}}"),
            "nys"
        );
        assert_eq!(
            ok("{{if and .Rec (gt .Rec.Ratio 0.001)}}slow{{end}}"),
            "slow"
        );
        assert_eq!(
            ok("{{with .Nothing}}x{{else with .Rec.Name}}{{.}}{{end}}"),
            "rev"
        );
        assert_eq!(ok("{{if ne .Rec.Size 4}}x{{else}}size4{{end}}"), "size4");
    }

    #[test]
    fn range_and_variables() {
        assert_eq!(ok("{{range .Rec.Tags}}[{{.}}]{{end}}"), "[a][b<c]");
        assert_eq!(
            ok("{{range $i, $t := .Rec.Tags}}{{$i}}={{$t}};{{end}}"),
            "0=a;1=b<c;"
        );
        assert_eq!(
            ok("{{range $k, $v := .Map}}{{$k}}:{{len $v}} {{end}}"),
            "Accept:2 Zeta:1 "
        );
        assert_eq!(ok("{{range .Nothing}}x{{else}}empty{{end}}"), "empty");
        assert_eq!(
            ok(
                "{{range 5}}{{if eq . 3}}{{break}}{{end}}{{if eq . 1}}{{continue}}{{end}}{{.}}{{end}}"
            ),
            "02"
        );
        assert_eq!(ok("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}"), "2");
        assert_eq!(ok("{{$x := .Rec}}{{$x.Name}}"), "rev");
        assert_eq!(ok("a  {{- /* trimmed */ -}}  b {{- \" c\" }}"), "ab c");
    }

    #[test]
    fn execution_errors_read_like_go() {
        assert_eq!(
            run("{{.Rec.Something}}").unwrap_err(),
            "template: t:1:6: executing \"t\" at <.Rec.Something>: can't evaluate field Something in type *main.Rec"
        );
        assert_eq!(
            run("x\n  {{.Rec.Name.X}}").unwrap_err(),
            "template: t:2:8: executing \"t\" at <.Rec.Name.X>: can't evaluate field X in type string"
        );
        let err = |t: &str| run(t).unwrap_err();
        assert!(err("{{.Rec.Greet}}").ends_with("wrong number of args for Greet: want 1 got 0"));
        assert!(err("{{.Rec.Greet 3}}").ends_with("expected string; found 3"));
        assert!(
            err("{{.Rec.Greet .Rec.Code}}")
                .ends_with("wrong type for value; expected string; got int")
        );
        assert!(
            err("{{.Rec.Add .Rec.Size 1}}")
                .ends_with("wrong type for value; expected int; got int64")
        );
        assert!(err("{{.Rec.Add 1 -1}}").ends_with("error calling Add: negative"));
        assert!(
            err("{{.Rec.Name 1}}")
                .ends_with("Name has arguments but cannot be invoked as function")
        );
        assert!(err("{{.Map.Accept 1}}").ends_with("Accept is not a method but has arguments"));
        assert!(
            err("{{.Hidden}}").ends_with(
                "*main.Root.Hidden is not supported by this request-log template engine"
            )
        );
        assert!(
            err("{{eq .Rec.Code 1.0}}")
                .ends_with("error calling eq: incompatible types for comparison: int and float64")
        );
        assert!(err("{{len 3}}").ends_with("error calling len: len of type int"));
        assert!(err("{{nil}}").ends_with("nil is not a command"));
        assert!(err("{{3 4}}").ends_with("can't give argument to non-function 3"));
        assert!(err("{{printf 3}}").ends_with("expected string; found 3"));
        assert!(
            err("{{index .Rec.Tags 5}}").ends_with("error calling index: index out of range: 5")
        );
        assert!(
            err("{{call .Rec.Name}}")
                .ends_with("error calling call: non-function .Rec.Name of type string")
        );
        assert!(
            err("{{range .Rec.Name}}{{end}}")
                .ends_with("range can't iterate over value of type string")
        );
    }
}
