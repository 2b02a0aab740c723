//! Executes a parsed template against a value, with Go's `text/template` semantics.

use std::collections::BTreeMap;

use super::funcs::{self, Env};
use super::parse::{BranchKind, Command, List, Node, Operand, Pipeline};
use super::value::Value;

/// Deepest `{{template}}` nesting allowed, so a self-including template errors instead of
/// overflowing the stack.
const MAX_DEPTH: usize = 100;

enum Flow {
    Normal,
    Break,
    Continue,
}

/// The running state of one execution.
pub(crate) struct Exec<'a> {
    pub defines: &'a BTreeMap<String, List>,
    pub env: &'a Env<'a>,
    vars: Vec<(String, Value)>,
    depth: usize,
    line: usize,
}

/// An execution error with the line of the action that failed.
pub(crate) struct ExecError {
    pub line: usize,
    /// The failing node as Go prints it (`first`, `.Labels.x.y`), when known.
    pub at: Option<String>,
    pub message: String,
}

/// A failure on its way up, with the node it happened at once known.
pub(crate) struct Fail {
    at: Option<String>,
    message: String,
}

impl From<String> for Fail {
    fn from(message: String) -> Self {
        Fail { at: None, message }
    }
}

impl Fail {
    /// Names the failing node, unless a deeper one was named already.
    fn at(mut self, node: impl FnOnce() -> String) -> Fail {
        if self.at.is_none() {
            self.at = Some(node());
        }
        self
    }
}

type EResult<T> = Result<T, Fail>;

impl<'a> Exec<'a> {
    pub fn new(
        defines: &'a BTreeMap<String, List>,
        env: &'a Env<'a>,
        vars: Vec<(String, Value)>,
    ) -> Self {
        Exec {
            defines,
            env,
            vars,
            depth: 0,
            line: 1,
        }
    }

    /// Runs `list` with `dot`, appending output to `out`.
    pub fn run(&mut self, list: &List, dot: &Value, out: &mut String) -> Result<(), ExecError> {
        self.walk(list, dot, out)
            .map(|_| ())
            .map_err(|f| ExecError {
                line: self.line,
                at: f.at,
                message: f.message,
            })
    }

    fn walk(&mut self, list: &List, dot: &Value, out: &mut String) -> EResult<Flow> {
        for node in list {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Action { line, pipe } => {
                    self.line = *line;
                    let v = self.pipeline(pipe, dot)?;
                    if pipe.decls.is_empty() {
                        print_value(&v, out);
                    }
                }
                Node::Branch {
                    kind,
                    line,
                    arms,
                    otherwise,
                } => {
                    self.line = *line;
                    let mark = self.vars.len();
                    let mut taken = None;
                    for (pipe, body) in arms {
                        let v = self.pipeline(pipe, dot)?;
                        if v.truthy() {
                            let new_dot = if *kind == BranchKind::With {
                                v
                            } else {
                                dot.clone()
                            };
                            taken = Some(self.walk(body, &new_dot, out)?);
                            break;
                        }
                    }
                    let flow = match (taken, otherwise) {
                        (Some(f), _) => f,
                        (None, Some(body)) => self.walk(body, dot, out)?,
                        (None, None) => Flow::Normal,
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    line,
                    pipe,
                    body,
                    otherwise,
                } => {
                    self.line = *line;
                    let mark = self.vars.len();
                    let v = self.pipeline_value(pipe, dot)?;
                    let items: Box<dyn Iterator<Item = (Value, Value)>> = match &v {
                        Value::List(l) => Box::new(
                            l.iter()
                                .enumerate()
                                .map(|(i, x)| (Value::Int(i as i64), x.clone()))
                                .collect::<Vec<_>>()
                                .into_iter(),
                        ),
                        Value::Map(m) => Box::new(
                            m.iter()
                                .map(|(k, x)| (Value::Str(k.clone()), x.clone()))
                                .collect::<Vec<_>>()
                                .into_iter(),
                        ),
                        // Lazily: `range 1000000` must not build a list first.
                        Value::Int(n) => Box::new((0..*n).map(|i| (Value::Int(i), Value::Int(i)))),
                        Value::Nil => Box::new(std::iter::empty()),
                        other => {
                            let msg = format!("range can't iterate over {}", other.to_go_string());
                            return Err(Fail::from(msg).at(|| describe_pipeline(pipe)));
                        }
                    };
                    let mut empty = true;
                    for (key, item) in items {
                        empty = false;
                        self.vars.truncate(mark);
                        match pipe.decls.as_slice() {
                            [] => {}
                            [v] => self.vars.push((v.clone(), item.clone())),
                            [k, v, ..] => {
                                self.vars.push((k.clone(), key));
                                self.vars.push((v.clone(), item.clone()));
                            }
                        }
                        match self.walk(body, &item, out)? {
                            Flow::Break => break,
                            Flow::Continue | Flow::Normal => {}
                        }
                    }
                    if empty && let Some(body) = otherwise {
                        self.vars.truncate(mark);
                        self.walk(body, dot, out)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Template { line, name, pipe } => {
                    self.line = *line;
                    let new_dot = match pipe {
                        Some(p) => self.pipeline_value(p, dot)?,
                        None => Value::Nil,
                    };
                    out.push_str(&self.call_template(name, new_dot)?);
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    /// Runs a `{{define}}`d template with its own variables and returns its output.
    pub fn call_template(&mut self, name: &str, dot: Value) -> EResult<String> {
        let body = self.defines.get(name).ok_or_else(|| {
            Fail::from(format!("template \"{name}\" not defined"))
                .at(|| format!("{{{{template {name:?}}}}}"))
        })?;
        if self.depth >= MAX_DEPTH {
            return Err(format!("exceeded maximum template depth ({MAX_DEPTH})").into());
        }
        let saved = std::mem::replace(&mut self.vars, vec![("$".to_string(), dot.clone())]);
        self.depth += 1;
        let mut out = String::new();
        let r = self.walk(body, &dot, &mut out);
        self.depth -= 1;
        self.vars = saved;
        r.map(|_| out)
    }

    /// Evaluates a pipeline and applies its declarations/assignments.
    fn pipeline(&mut self, pipe: &Pipeline, dot: &Value) -> EResult<Value> {
        let v = self.pipeline_value(pipe, dot)?;
        if let Some(name) = pipe.decls.first() {
            if pipe.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    /// Evaluates the commands of a pipeline, each result feeding the next as its last argument.
    fn pipeline_value(&mut self, pipe: &Pipeline, dot: &Value) -> EResult<Value> {
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(cmd, value, dot)?);
        }
        Ok(value.unwrap_or(Value::Nil))
    }

    fn command(&mut self, cmd: &Command, piped: Option<Value>, dot: &Value) -> EResult<Value> {
        let first = &cmd.args[0];
        if let Operand::Func(name) = first {
            let rest = &cmd.args[1..];
            if name == "and" || name == "or" {
                return self.and_or(name == "and", rest, piped, dot);
            }
            let mut args = Vec::with_capacity(rest.len() + 1);
            for a in rest {
                args.push(self.operand(a, dot)?);
            }
            if let Some(p) = piped {
                args.push(p);
            }
            return self.call(name, args);
        }
        if cmd.args.len() > 1 || piped.is_some() {
            let msg = format!(
                "can't give argument to non-function {}",
                describe_operand(first)
            );
            return Err(Fail::from(msg).at(|| describe_operand(first)));
        }
        self.operand(first, dot)
    }

    /// `and`/`or` evaluate their arguments lazily and return the deciding one.
    fn and_or(
        &mut self,
        is_and: bool,
        rest: &[Operand],
        piped: Option<Value>,
        dot: &Value,
    ) -> EResult<Value> {
        let name = if is_and { "and" } else { "or" };
        if rest.len() + usize::from(piped.is_some()) < 1 {
            return Err(format!("wrong number of args for {name}: want at least 1 got 0").into());
        }
        let mut last = Value::Nil;
        for a in rest {
            last = self.operand(a, dot)?;
            if last.truthy() != is_and {
                return Ok(last);
            }
        }
        if let Some(p) = piped {
            last = p;
        }
        Ok(last)
    }

    /// Calls a function; its own failures read `error calling NAME: ...` at `<NAME>`, like Go.
    fn call(&mut self, name: &str, args: Vec<Value>) -> EResult<Value> {
        let wrap =
            |e: String| Fail::from(format!("error calling {name}: {e}")).at(|| name.to_string());
        if name == "tmpl" {
            let [n, data] = <[Value; 2]>::try_from(args).map_err(|a| {
                wrap(format!(
                    "wrong number of args for tmpl: want 2 got {}",
                    a.len()
                ))
            })?;
            let Value::Str(n) = n else {
                return Err(wrap(format!(
                    "wrong type for value; expected string; got {}",
                    n.go_type()
                )));
            };
            return self.call_template(&n, data).map(Value::Str);
        }
        funcs::call(name, args, self.env).map_err(wrap)
    }

    fn operand(&mut self, op: &Operand, dot: &Value) -> EResult<Value> {
        let node = || describe_operand(op);
        Ok(match op {
            Operand::Dot(fields) => follow(dot.clone(), fields).map_err(|f| f.at(node))?,
            Operand::Var(name, fields) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| Fail::from(format!("undefined variable: {name}")).at(node))?;
                follow(v, fields).map_err(|f| f.at(node))?
            }
            Operand::Func(name) => self.call(name, Vec::new())?,
            Operand::Str(s) => Value::Str(s.clone()),
            Operand::Int(i) => Value::Int(*i),
            Operand::Float(f) => Value::Float(*f),
            Operand::Bool(b) => Value::Bool(*b),
            Operand::Nil => Value::Nil,
            Operand::Sub(pipe, fields) => {
                let v = self.pipeline(pipe, dot)?;
                follow(v, fields).map_err(|f| f.at(node))?
            }
        })
    }
}

fn follow(mut v: Value, fields: &[String]) -> EResult<Value> {
    for f in fields {
        v = v.field(f)?;
    }
    Ok(v)
}

/// A pipeline as Go prints it in errors: `$value | humanize`.
fn describe_pipeline(p: &Pipeline) -> String {
    let cmds: Vec<String> = p
        .cmds
        .iter()
        .map(|c| {
            c.args
                .iter()
                .map(describe_operand)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let body = cmds.join(" | ");
    if p.decls.is_empty() {
        body
    } else {
        let op = if p.assign { "=" } else { ":=" };
        format!("{} {op} {body}", p.decls.join(", "))
    }
}

fn describe_operand(op: &Operand) -> String {
    match op {
        Operand::Dot(f) if f.is_empty() => ".".into(),
        Operand::Dot(f) => format!(".{}", f.join(".")),
        Operand::Var(n, f) if f.is_empty() => n.clone(),
        Operand::Var(n, f) => format!("{n}.{}", f.join(".")),
        Operand::Str(s) => format!("{s:?}"),
        Operand::Int(i) => i.to_string(),
        Operand::Float(x) => x.to_string(),
        Operand::Bool(b) => b.to_string(),
        Operand::Nil => "nil".into(),
        Operand::Func(n) => n.clone(),
        Operand::Sub(p, f) if f.is_empty() => format!("({})", describe_pipeline(p)),
        Operand::Sub(p, f) => format!("({}).{}", describe_pipeline(p), f.join(".")),
    }
}

/// How an action prints its value: like `fmt.Fprint`, with `<no value>` for nil.
fn print_value(v: &Value, out: &mut String) {
    match v {
        Value::Nil => out.push_str("<no value>"),
        v => out.push_str(&v.to_go_string()),
    }
}
