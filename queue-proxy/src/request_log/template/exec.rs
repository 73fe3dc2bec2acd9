//! The executor: Go's `text/template/exec.go`.
//!
//! The evaluation rules that decide what an operator's template prints, all mirrored:
//!
//! - A pipeline runs its commands left to right; each command's result is the *final*
//!   argument of the next (`{{.X | printf "%q"}}` is `printf "%q" .X`).
//! - `.A.B.C` walks fields; on the last element a method gets the command's arguments
//!   (`{{.Request.Header.Get "X"}}`). Methods are found before fields; a map's field syntax
//!   looks its key up (missing → no value). Arguments to a field are an error.
//! - Arguments are checked against parameter types as Go does (`wrong number of args for
//!   Get: want 1 got 0`, `expected string; found 3`, `wrong type for value; expected string;
//!   got int`); number literals become `int` or `float64` by their spelling.
//! - `and`/`or` short-circuit and return an operand, not a bool.
//! - `if`/`with` test Go's truth (zero values are false); `with` and `range` rebind dot;
//!   variables live until the `{{end}}` of the structure that declared them; `range` walks
//!   slices, maps (by sorted key) and integers, with `break`/`continue`.
//! - A value printed by an action goes through `printableValue` (a missing value prints
//!   `<no value>`, a pointer to a struct prints its fields).
//!
//! Errors carry Go's context: `template: NAME:LINE:COL: executing "NAME" at <NODE>: MSG`.

use std::fmt;

use super::Template;
use super::funcs::{self, Builtin, PType, Sig};
use super::node::{Arg, Branch, BranchKind, Command, Node, Number, Pipe};
use super::value::{IntType, Member, Param, Shape, Value};
use crate::request_log::gofmt;

/// A template that failed while executing. Displays as Go's `ExecError`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template: {location}: executing {name:?} at <{context}>: {msg}")]
pub struct ExecError {
    /// The template's name.
    pub name: String,
    /// `NAME:LINE:COL` of the node being evaluated.
    pub location: String,
    /// The node, as Go prints it.
    pub context: String,
    /// What went wrong, in Go's words.
    pub msg: String,
}

type Result<T> = std::result::Result<T, ExecError>;

/// The node an error is reported at.
#[derive(Clone, Copy)]
enum At<'a> {
    Arg(&'a Arg),
    Cmd(&'a Command),
    Pipe(&'a Pipe),
    Action(&'a Pipe),
}

impl At<'_> {
    fn pos(&self) -> usize {
        match self {
            At::Arg(a) => a.pos(),
            At::Cmd(c) => c.pos,
            At::Pipe(p) | At::Action(p) => p.pos,
        }
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Arg(a) => write!(f, "{a}"),
            At::Cmd(c) => write!(f, "{c}"),
            At::Pipe(p) => write!(f, "{p}"),
            At::Action(p) => write!(f, "{{{{{p}}}}}"),
        }
    }
}

/// How a walk ended, for `{{break}}` and `{{continue}}`.
enum Flow {
    Normal,
    Break,
    Continue,
}

/// What a call goes to.
enum Callee<'a> {
    Builtin(Builtin),
    Method(&'a dyn super::value::Object<'a>),
}

struct State<'a, 'o> {
    tmpl: &'a Template,
    out: &'o mut Vec<u8>,
    vars: Vec<(&'a str, Value<'a>)>,
}

/// Runs `tmpl` with `data` as dot, appending the output to `out`. On error, `out` holds
/// whatever was written before it.
pub(super) fn execute<'a>(tmpl: &'a Template, data: Value<'a>, out: &mut Vec<u8>) -> Result<()> {
    let mut s = State {
        tmpl,
        out,
        vars: vec![("$", data.clone())],
    };
    s.walk_list(&data, &tmpl.root).map(|_| ())
}

fn ptype(p: Param) -> PType {
    match p {
        Param::Str => PType::Str,
        Param::Int => PType::Int,
    }
}

fn ptype_name(p: PType) -> &'static str {
    match p {
        PType::Any => "interface {}",
        PType::Str => "string",
        PType::Int => "int",
    }
}

impl<'a> State<'a, '_> {
    fn error(&self, at: At<'_>, msg: String) -> ExecError {
        let pos = at.pos();
        let before = &self.tmpl.source.as_bytes()[..pos.min(self.tmpl.source.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let col = match before.iter().rposition(|&b| b == b'\n') {
            Some(nl) => pos - (nl + 1),
            None => pos,
        };
        ExecError {
            name: self.tmpl.name.clone(),
            location: format!("{}:{line}:{col}", self.tmpl.name),
            context: at.to_string(),
            msg,
        }
    }

    // Variables.

    fn var_value(&self, at: At<'_>, name: &str) -> Result<Value<'a>> {
        match self.vars.iter().rev().find(|(n, _)| *n == name) {
            Some((_, v)) => Ok(v.clone()),
            None => Err(self.error(at, format!("undefined variable: {name}"))),
        }
    }

    fn set_var(&mut self, at: At<'_>, name: &str, value: Value<'a>) -> Result<()> {
        match self.vars.iter_mut().rev().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                *v = value;
                Ok(())
            }
            None => Err(self.error(at, format!("undefined variable: {name}"))),
        }
    }

    fn set_top_var(&mut self, n: usize, value: Value<'a>) {
        let len = self.vars.len();
        self.vars[len - n].1 = value;
    }

    // Walking.

    fn walk_list(&mut self, dot: &Value<'a>, list: &'a [Node]) -> Result<Flow> {
        for node in list {
            match self.walk(dot, node)? {
                Flow::Normal => {}
                flow => return Ok(flow),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Value<'a>, node: &'a Node) -> Result<Flow> {
        match node {
            Node::Text(t) => self.out.extend_from_slice(t.as_bytes()),
            Node::Action(pipe) => {
                let v = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    gofmt::print_printable(self.out, &v).map_err(|e| {
                        self.error(
                            At::Action(pipe),
                            format!(
                                "printing a value of type {} is not supported by this \
                                 request-log template engine",
                                e.0
                            ),
                        )
                    })?;
                }
            }
            Node::Branch(b) if b.kind == BranchKind::Range => return self.walk_range(dot, b),
            Node::Branch(b) => return self.walk_if_or_with(dot, b),
            Node::Break => return Ok(Flow::Break),
            Node::Continue => return Ok(Flow::Continue),
        }
        Ok(Flow::Normal)
    }

    fn walk_if_or_with(&mut self, dot: &Value<'a>, b: &'a Branch) -> Result<Flow> {
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let flow = if val.is_true() {
            if b.kind == BranchKind::With {
                self.walk_list(&val, &b.list)?
            } else {
                self.walk_list(dot, &b.list)?
            }
        } else if let Some(else_list) = &b.else_list {
            self.walk_list(dot, else_list)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn walk_range(&mut self, dot: &Value<'a>, b: &'a Branch) -> Result<Flow> {
        let mark = self.vars.len();
        let val = self.eval_pipeline(dot, &b.pipe)?;
        let body_mark = self.vars.len();
        let decl = &b.pipe.decl;
        let at = At::Pipe(&b.pipe);
        let one = |s: &mut Self, index: Value<'a>, elem: Value<'a>| -> Result<bool> {
            if !decl.is_empty() {
                if b.pipe.is_assign {
                    let v = if decl.len() > 1 {
                        index.clone()
                    } else {
                        elem.clone()
                    };
                    s.set_var(at, &decl[0], v)?;
                } else {
                    s.set_top_var(1, elem.clone());
                }
            }
            if decl.len() > 1 {
                if b.pipe.is_assign {
                    s.set_var(at, &decl[1], elem.clone())?;
                } else {
                    s.set_top_var(2, index);
                }
            }
            let flow = s.walk_list(&elem, &b.list)?;
            s.vars.truncate(body_mark);
            Ok(!matches!(flow, Flow::Break))
        };
        let mut ran = false;
        match &val {
            Value::Strings(items) => {
                for (i, item) in items.iter().enumerate() {
                    ran = true;
                    if !one(self, Value::int(i as i64), Value::Str(item.clone()))? {
                        break;
                    }
                }
            }
            Value::Obj(o) if o.shape() == Shape::Map => {
                for (k, v) in o.map_entries() {
                    ran = true;
                    if !one(self, Value::Str(k), v)? {
                        break;
                    }
                }
            }
            Value::Int(n, t) => {
                if decl.len() > 1 {
                    return Err(self.error(
                        at,
                        format!("can't use {n} to iterate over more than one variable"),
                    ));
                }
                for i in 0..*n {
                    ran = true;
                    if !one(self, Value::Nil, Value::Int(i, *t))? {
                        break;
                    }
                }
            }
            Value::Nil => {}
            other => {
                return Err(self.error(
                    at,
                    format!(
                        "range can't iterate over value of type {}",
                        other.type_name()
                    ),
                ));
            }
        }
        if !ran && let Some(else_list) = &b.else_list {
            self.walk_list(dot, else_list)?;
        }
        self.vars.truncate(mark);
        Ok(Flow::Normal)
    }

    // Evaluation.

    fn eval_pipeline(&mut self, dot: &Value<'a>, pipe: &'a Pipe) -> Result<Value<'a>> {
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for var in &pipe.decl {
            if pipe.is_assign {
                self.set_var(At::Pipe(pipe), var, value.clone())?;
            } else {
                self.vars.push((var, value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, first: &'a Arg, rest: &[Arg], fin: &Option<Value<'a>>) -> Result<()> {
        if !rest.is_empty() || fin.is_some() {
            return Err(self.error(
                At::Arg(first),
                format!("can't give argument to non-function {first}"),
            ));
        }
        Ok(())
    }

    fn eval_command(
        &mut self,
        dot: &Value<'a>,
        cmd: &'a Command,
        fin: Option<Value<'a>>,
    ) -> Result<Value<'a>> {
        let first = &cmd.args[0];
        let rest = &cmd.args[1..];
        match first {
            Arg::Field { idents, .. } => {
                self.eval_field_chain(dot, dot.clone(), At::Arg(first), idents, rest, fin)
            }
            Arg::Chain { node, fields, .. } => self.eval_chain(dot, first, node, fields, rest, fin),
            Arg::Identifier { name, .. } => {
                self.eval_function(dot, first, name, At::Cmd(cmd), rest, fin)
            }
            Arg::Variable { idents, .. } => self.eval_variable(dot, first, idents, rest, fin),
            Arg::Pipe(p) => {
                self.not_a_function(first, rest, &fin)?;
                self.eval_pipeline(dot, p)
            }
            Arg::Bool { value, .. } => {
                self.not_a_function(first, rest, &fin)?;
                Ok(Value::Bool(*value))
            }
            Arg::Dot { .. } => {
                self.not_a_function(first, rest, &fin)?;
                Ok(dot.clone())
            }
            Arg::Nil { .. } => {
                self.not_a_function(first, rest, &fin)?;
                Err(self.error(At::Arg(first), "nil is not a command".into()))
            }
            Arg::Number { number, .. } => {
                self.not_a_function(first, rest, &fin)?;
                self.ideal_constant(first, number)
            }
            Arg::String { value, .. } => {
                self.not_a_function(first, rest, &fin)?;
                Ok(Value::str(value))
            }
        }
    }

    /// An untyped number literal: `float64` if spelled like one, else `int`.
    fn ideal_constant(&self, at: &'a Arg, n: &Number) -> Result<Value<'a>> {
        let t = n.text.as_bytes();
        let hex_int = t.len() > 2
            && t[0] == b'0'
            && matches!(t[1], b'x' | b'X')
            && !n.text.contains(['p', 'P']);
        let rune = t.first() == Some(&b'\'');
        if let Some(f) = n.float
            && !hex_int
            && !rune
            && n.text.contains(['.', 'e', 'E', 'p', 'P'])
        {
            return Ok(Value::Float(f));
        }
        if let Some(i) = n.int {
            return Ok(Value::int(i));
        }
        if n.uint.is_some() {
            return Err(self.error(At::Arg(at), format!("{} overflows int", n.text)));
        }
        Ok(Value::Nil)
    }

    fn eval_chain(
        &mut self,
        dot: &Value<'a>,
        chain: &'a Arg,
        node: &'a Arg,
        fields: &'a [String],
        rest: &'a [Arg],
        fin: Option<Value<'a>>,
    ) -> Result<Value<'a>> {
        if let Arg::Nil { .. } = node {
            return Err(self.error(
                At::Arg(chain),
                format!("indirection through explicit nil in {chain}"),
            ));
        }
        let receiver = self.eval_arg(dot, PType::Any, node)?;
        self.eval_field_chain(dot, receiver, At::Arg(chain), fields, rest, fin)
    }

    fn eval_variable(
        &mut self,
        dot: &Value<'a>,
        var: &'a Arg,
        idents: &'a [String],
        rest: &'a [Arg],
        fin: Option<Value<'a>>,
    ) -> Result<Value<'a>> {
        let value = self.var_value(At::Arg(var), &idents[0])?;
        if idents.len() == 1 {
            self.not_a_function(var, rest, &fin)?;
            return Ok(value);
        }
        self.eval_field_chain(dot, value, At::Arg(var), &idents[1..], rest, fin)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Value<'a>,
        mut receiver: Value<'a>,
        at: At<'a>,
        idents: &'a [String],
        rest: &'a [Arg],
        fin: Option<Value<'a>>,
    ) -> Result<Value<'a>> {
        let (last, init) = idents.split_last().expect("a field chain has a name");
        for name in init {
            receiver = self.eval_field(dot, name, at, &[], None, receiver)?;
        }
        self.eval_field(dot, last, at, rest, fin, receiver)
    }

    /// `.name` on `receiver`: a method call (with `rest` and `fin` as its arguments), a
    /// field, or a map entry.
    fn eval_field(
        &mut self,
        dot: &Value<'a>,
        name: &str,
        at: At<'a>,
        rest: &'a [Arg],
        fin: Option<Value<'a>>,
        receiver: Value<'a>,
    ) -> Result<Value<'a>> {
        let o = match receiver {
            Value::Nil => return Ok(Value::Nil),
            Value::Obj(o) => o,
            other => {
                return Err(self.error(
                    at,
                    format!("can't evaluate field {name} in type {}", other.type_name()),
                ));
            }
        };
        let has_args = !rest.is_empty() || fin.is_some();
        match o.member(name) {
            Member::Method(params) => {
                let fixed: Vec<PType> = params.iter().copied().map(ptype).collect();
                self.eval_call(
                    dot,
                    Callee::Method(o),
                    &fixed,
                    None,
                    at,
                    at,
                    name,
                    rest,
                    fin,
                )
            }
            Member::Field(_) if o.shape() == Shape::NilPointer => Err(self.error(
                at,
                format!("nil pointer evaluating {}.{name}", o.type_name()),
            )),
            Member::Field(_) if has_args => Err(self.error(
                at,
                if o.shape() == Shape::Map {
                    format!("{name} is not a method but has arguments")
                } else {
                    format!("{name} has arguments but cannot be invoked as function")
                },
            )),
            Member::Field(v) => Ok(v),
            Member::Unsupported => Err(self.error(
                at,
                format!(
                    "{}.{name} is not supported by this request-log template engine",
                    o.type_name()
                ),
            )),
            Member::NotFound => Err(self.error(
                at,
                format!("can't evaluate field {name} in type {}", o.type_name()),
            )),
        }
    }

    fn eval_function(
        &mut self,
        dot: &Value<'a>,
        ident: &'a Arg,
        name: &str,
        call_at: At<'a>,
        rest: &'a [Arg],
        fin: Option<Value<'a>>,
    ) -> Result<Value<'a>> {
        let Some(f) = Builtin::from_name(name) else {
            return Err(self.error(
                At::Arg(ident),
                format!("{name:?} is not a defined function"),
            ));
        };
        let Sig { fixed, variadic } = f.sig();
        self.eval_call(
            dot,
            Callee::Builtin(f),
            fixed,
            variadic,
            At::Arg(ident),
            call_at,
            name,
            rest,
            fin,
        )
    }

    /// Go's `evalCall`: checks the argument count, evaluates the arguments against the
    /// parameter types (the pipeline's value last), and calls.
    #[allow(clippy::too_many_arguments)]
    fn eval_call(
        &mut self,
        dot: &Value<'a>,
        callee: Callee<'a>,
        fixed: &[PType],
        variadic: Option<PType>,
        at: At<'a>,
        call_at: At<'a>,
        name: &str,
        rest: &'a [Arg],
        fin: Option<Value<'a>>,
    ) -> Result<Value<'a>> {
        let num_in = rest.len() + usize::from(fin.is_some());
        if variadic.is_some() {
            if num_in < fixed.len() {
                return Err(self.error(
                    at,
                    format!(
                        "wrong number of args for {name}: want at least {} got {}",
                        fixed.len(),
                        rest.len()
                    ),
                ));
            }
        } else if num_in != fixed.len() {
            return Err(self.error(
                at,
                format!(
                    "wrong number of args for {name}: want {} got {num_in}",
                    fixed.len()
                ),
            ));
        }
        if let Callee::Builtin(f @ (Builtin::And | Builtin::Or)) = callee {
            let want = f == Builtin::Or;
            let mut v = Value::Nil;
            for arg in rest {
                v = self.eval_arg(dot, PType::Any, arg)?;
                if v.is_true() == want {
                    return Ok(v);
                }
            }
            return Ok(fin.unwrap_or(v));
        }
        let mut argv = Vec::with_capacity(num_in);
        for (i, arg) in rest.iter().enumerate() {
            let t = fixed.get(i).copied().or(variadic).unwrap_or(PType::Any);
            argv.push(self.eval_arg(dot, t, arg)?);
        }
        if let Some(f) = fin {
            let t = match variadic {
                Some(v) if num_in > fixed.len() => v,
                _ => fixed[num_in - 1],
            };
            argv.push(self.validate_type(at, f, t)?);
        }
        let result = match callee {
            Callee::Builtin(f) => {
                let callee_text = rest.first().map(ToString::to_string).unwrap_or_default();
                funcs::call(f, argv, &callee_text)
            }
            Callee::Method(o) => o.call(name, &argv),
        };
        result.map_err(|e| self.error(call_at, format!("error calling {name}: {e}")))
    }

    /// Go's `validateType`: a computed value passed where a parameter of type `t` is.
    fn validate_type(&self, at: At<'_>, v: Value<'a>, t: PType) -> Result<Value<'a>> {
        let ok = match (&v, t) {
            (_, PType::Any) => true,
            (Value::Str(_), PType::Str) => true,
            (Value::Int(_, IntType::Int), PType::Int) => true,
            (Value::Nil, _) => {
                return Err(self.error(at, format!("invalid value; expected {}", ptype_name(t))));
            }
            _ => false,
        };
        if ok {
            return Ok(v);
        }
        Err(self.error(
            at,
            format!(
                "wrong type for value; expected {}; got {}",
                ptype_name(t),
                v.type_name()
            ),
        ))
    }

    /// Go's `evalArg`: one argument node, evaluated for a parameter of type `t`.
    fn eval_arg(&mut self, dot: &Value<'a>, t: PType, n: &'a Arg) -> Result<Value<'a>> {
        let at = At::Arg(n);
        let v = match n {
            Arg::Dot { .. } => dot.clone(),
            Arg::Nil { .. } => {
                if t == PType::Any {
                    return Ok(Value::Nil);
                }
                return Err(self.error(at, format!("cannot assign nil to {}", ptype_name(t))));
            }
            Arg::Field { idents, .. } => {
                self.eval_field_chain(dot, dot.clone(), at, idents, &[], None)?
            }
            Arg::Variable { idents, .. } => self.eval_variable(dot, n, idents, &[], None)?,
            Arg::Pipe(p) => self.eval_pipeline(dot, p)?,
            Arg::Identifier { name, .. } => self.eval_function(dot, n, name, at, &[], None)?,
            Arg::Chain { node, fields, .. } => self.eval_chain(dot, n, node, fields, &[], None)?,
            Arg::Bool { value, .. } => {
                return match t {
                    PType::Any => Ok(Value::Bool(*value)),
                    PType::Str => Err(self.error(at, format!("expected string; found {n}"))),
                    PType::Int => Err(self.error(at, format!("expected integer; found {n}"))),
                };
            }
            Arg::Number { number, .. } => {
                return match t {
                    PType::Any => self.ideal_constant(n, number),
                    PType::Int => match number.int {
                        Some(i) => Ok(Value::int(i)),
                        None => Err(self.error(at, format!("expected integer; found {n}"))),
                    },
                    PType::Str => Err(self.error(at, format!("expected string; found {n}"))),
                };
            }
            Arg::String { value, .. } => {
                return match t {
                    PType::Any | PType::Str => Ok(Value::str(value)),
                    PType::Int => Err(self.error(at, format!("expected integer; found {n}"))),
                };
            }
        };
        self.validate_type(at, v, t)
    }
}
