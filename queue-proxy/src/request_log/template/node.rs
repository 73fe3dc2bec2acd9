//! The parse tree: Go's `text/template/parse/node.go`, reduced to the nodes this engine
//! executes. Every node keeps its byte offset in the source, for `line:col` in execution
//! errors, and prints itself as Go's `Node.String()` does, for the `at <…>` context.

use std::fmt;

/// A list of nodes (Go's `ListNode`).
pub(super) type List = Vec<Node>;

/// A statement-level node.
#[derive(Debug)]
pub(super) enum Node {
    /// Plain text, copied to the output.
    Text(Box<str>),
    /// `{{pipeline}}`: the value is printed unless the pipeline declares variables.
    Action(Pipe),
    /// `{{if}}`, `{{with}}` and `{{range}}`.
    Branch(Branch),
    /// `{{break}}` inside `{{range}}`.
    Break,
    /// `{{continue}}` inside `{{range}}`.
    Continue,
}

/// Which control structure a [`Branch`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BranchKind {
    If,
    With,
    Range,
}

/// `{{if|with|range pipeline}} list {{else}} else_list {{end}}`.
#[derive(Debug)]
pub(super) struct Branch {
    pub kind: BranchKind,
    pub pipe: Pipe,
    pub list: List,
    pub else_list: Option<List>,
}

/// A pipeline, possibly declaring or assigning variables (Go's `PipeNode`).
#[derive(Debug)]
pub(super) struct Pipe {
    pub pos: usize,
    pub is_assign: bool,
    pub decl: Vec<String>,
    pub cmds: Vec<Command>,
}

/// One stage of a pipeline: an operand followed by arguments (Go's `CommandNode`).
#[derive(Debug)]
pub(super) struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
}

/// An operand (Go's argument node types).
#[derive(Debug)]
pub(super) enum Arg {
    /// `.A.B`.
    Field { pos: usize, idents: Vec<String> },
    /// `(pipeline).A.B`.
    Chain {
        pos: usize,
        node: Box<Arg>,
        fields: Vec<String>,
    },
    /// A function name.
    Identifier { pos: usize, name: String },
    /// `$x.A.B` (`idents[0]` is the variable, with its `$`).
    Variable { pos: usize, idents: Vec<String> },
    /// `.`.
    Dot { pos: usize },
    /// `nil`.
    Nil { pos: usize },
    /// `true` / `false`.
    Bool { pos: usize, value: bool },
    /// A number literal.
    Number { pos: usize, number: Number },
    /// A string literal: its source spelling and its value.
    String {
        pos: usize,
        quoted: String,
        value: Vec<u8>,
    },
    /// `(pipeline)`.
    Pipe(Box<Pipe>),
}

impl Arg {
    pub fn pos(&self) -> usize {
        match self {
            Arg::Field { pos, .. }
            | Arg::Chain { pos, .. }
            | Arg::Identifier { pos, .. }
            | Arg::Variable { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Bool { pos, .. }
            | Arg::Number { pos, .. }
            | Arg::String { pos, .. } => *pos,
            Arg::Pipe(p) => p.pos,
        }
    }
}

/// A number literal with the interpretations Go's `NumberNode` records.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Number {
    pub text: String,
    pub int: Option<i64>,
    pub uint: Option<u64>,
    pub float: Option<f64>,
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            if let Arg::Pipe(p) = a {
                write!(f, "({p})")?;
            } else {
                write!(f, "{a}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Field { idents, .. } => {
                for id in idents {
                    write!(f, ".{id}")?;
                }
                Ok(())
            }
            Arg::Chain { node, fields, .. } => {
                if let Arg::Pipe(p) = &**node {
                    write!(f, "({p})")?;
                } else {
                    write!(f, "{node}")?;
                }
                for id in fields {
                    write!(f, ".{id}")?;
                }
                Ok(())
            }
            Arg::Identifier { name, .. } => f.write_str(name),
            Arg::Variable { idents, .. } => f.write_str(&idents.join(".")),
            Arg::Dot { .. } => f.write_str("."),
            Arg::Nil { .. } => f.write_str("nil"),
            Arg::Bool { value, .. } => write!(f, "{value}"),
            Arg::Number { number, .. } => f.write_str(&number.text),
            Arg::String { quoted, .. } => f.write_str(quoted),
            Arg::Pipe(p) => write!(f, "{p}"),
        }
    }
}
