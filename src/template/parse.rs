//! Lexer and parser for Go's `text/template` syntax, as used by Prometheus annotations and
//! labels. The tree it builds is executed by [`super::exec`].

use std::collections::BTreeMap;

/// A parsed template body: text and actions in order.
pub(crate) type List = Vec<Node>;

/// One element of a template body.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// Literal text, already trimmed by `{{-`/`-}}` markers.
    Text(String),
    /// `{{ pipeline }}`: evaluated and printed unless it declares variables.
    Action { line: usize, pipe: Pipeline },
    /// `{{if}}` and `{{with}}` chains; `else if`/`else with` become extra branches.
    Branch {
        kind: BranchKind,
        line: usize,
        arms: Vec<(Pipeline, List)>,
        otherwise: Option<List>,
    },
    /// `{{range pipeline}} ... {{else}} ... {{end}}`.
    Range {
        line: usize,
        pipe: Pipeline,
        body: List,
        otherwise: Option<List>,
    },
    /// `{{template "name" pipeline}}`.
    Template {
        line: usize,
        name: String,
        pipe: Option<Pipeline>,
    },
    /// `{{break}}` inside a range.
    Break,
    /// `{{continue}}` inside a range.
    Continue,
}

/// Whether a [`Node::Branch`] is an `if` (dot unchanged) or a `with` (dot set to the value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BranchKind {
    If,
    With,
}

/// `$a, $b := cmd | cmd | ...`
#[derive(Clone, Debug, Default)]
pub(crate) struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`) by this pipeline.
    pub decls: Vec<String>,
    /// True for `=` (assign to an existing variable), false for `:=`.
    pub assign: bool,
    pub cmds: Vec<Command>,
}

/// One command of a pipeline: a function with arguments, or a single operand.
#[derive(Clone, Debug)]
pub(crate) struct Command {
    pub args: Vec<Operand>,
}

/// An operand of a command.
#[derive(Clone, Debug)]
pub(crate) enum Operand {
    /// `.` followed by zero or more field names (`.Labels.job`).
    Dot(Vec<String>),
    /// `$name` followed by field names.
    Var(String, Vec<String>),
    /// A function name.
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `( pipeline )` optionally followed by field names.
    Sub(Box<Pipeline>, Vec<String>),
}

/// A parse error with the line it happened on (1-based).
#[derive(Debug)]
pub(crate) struct ParseError {
    pub line: usize,
    pub message: String,
}

type PResult<T> = Result<T, ParseError>;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Text(String),
    /// `{{` (the trim marker has already been applied to the text before it).
    Open,
    Close,
    Ident(String),
    /// `.Field` (a field name after a dot); a lone `.` is `Dot`.
    Field(String),
    Dot,
    Var(String),
    Str(String),
    Number(String),
    Char(char),
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
    /// Whitespace came before it: `$x .F` is two operands, `$x.F` one.
    spaced: bool,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn lex(text: &str) -> PResult<Vec<Token>> {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = 1;
    let mut trim_next_text = false;
    while i < chars.len() {
        // Text up to the next `{{`.
        let start = i;
        while i < chars.len() && !(chars[i] == '{' && chars.get(i + 1) == Some(&'{')) {
            i += 1;
        }
        let mut seg: String = chars[start..i].iter().collect();
        let text_line = line;
        line += seg.matches('\n').count();
        if trim_next_text {
            seg = seg.trim_start_matches(is_space).to_string();
        }
        trim_next_text = false;
        if i >= chars.len() {
            if !seg.is_empty() {
                out.push(Token {
                    tok: Tok::Text(seg),
                    line: text_line,
                    spaced: false,
                });
            }
            break;
        }
        // At `{{`.
        i += 2;
        let trim_left =
            chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| is_space(*c));
        if trim_left {
            seg = seg.trim_end_matches(is_space).to_string();
            i += 1;
            while i < chars.len() && is_space(chars[i]) {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
        }
        if !seg.is_empty() {
            out.push(Token {
                tok: Tok::Text(seg),
                line: text_line,
                spaced: false,
            });
        }
        // Comment: `{{/* ... */}}`, possibly with trim markers around it.
        if chars.get(i) == Some(&'/') && chars.get(i + 1) == Some(&'*') {
            let open_line = line;
            i += 2;
            loop {
                if i + 1 >= chars.len() {
                    return Err(ParseError {
                        line: open_line,
                        message: "unclosed comment".into(),
                    });
                }
                if chars[i] == '*' && chars[i + 1] == '/' {
                    break;
                }
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
            let mut j = i;
            while j < chars.len() && is_space(chars[j]) {
                j += 1;
            }
            if chars.get(j) == Some(&'-')
                && chars.get(j + 1) == Some(&'}')
                && chars.get(j + 2) == Some(&'}')
                && j > i
            {
                trim_next_text = true;
                i = j + 3;
            } else if chars.get(i) == Some(&'}') && chars.get(i + 1) == Some(&'}') {
                i += 2;
            } else {
                return Err(ParseError {
                    line,
                    message: "comment ends before closing delimiter".into(),
                });
            }
            continue;
        }
        out.push(Token {
            tok: Tok::Open,
            line,
            spaced: false,
        });
        // Inside the action.
        loop {
            let before = i;
            while i < chars.len() && is_space(chars[i]) {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            if i >= chars.len() {
                return Err(ParseError {
                    line,
                    message: "unclosed action".into(),
                });
            }
            let c = chars[i];
            if c == '-'
                && chars.get(i + 1) == Some(&'}')
                && chars.get(i + 2) == Some(&'}')
                && i > 0
                && is_space(chars[i - 1])
            {
                trim_next_text = true;
                i += 3;
                out.push(Token {
                    tok: Tok::Close,
                    line,
                    spaced: false,
                });
                break;
            }
            if c == '}' && chars.get(i + 1) == Some(&'}') {
                i += 2;
                out.push(Token {
                    tok: Tok::Close,
                    line,
                    spaced: false,
                });
                break;
            }
            let i_start = i;
            let tok = match c {
                '(' => {
                    i += 1;
                    Tok::LParen
                }
                ')' => {
                    i += 1;
                    Tok::RParen
                }
                '|' => {
                    i += 1;
                    Tok::Pipe
                }
                ',' => {
                    i += 1;
                    Tok::Comma
                }
                '=' => {
                    i += 1;
                    Tok::Assign
                }
                ':' => {
                    if chars.get(i + 1) == Some(&'=') {
                        i += 2;
                        Tok::Declare
                    } else {
                        return Err(ParseError {
                            line,
                            message: "expected :=".into(),
                        });
                    }
                }
                '"' => {
                    let (s, next) = lex_quoted(&chars, i, line)?;
                    i = next;
                    Tok::Str(s)
                }
                '`' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < chars.len() && chars[j] != '`' {
                        j += 1;
                    }
                    if j >= chars.len() {
                        return Err(ParseError {
                            line,
                            message: "unterminated raw quoted string".into(),
                        });
                    }
                    let s: String = chars[start..j].iter().collect();
                    line += s.matches('\n').count();
                    i = j + 1;
                    Tok::Str(s)
                }
                '\'' => {
                    let (c, next) = lex_char(&chars, i, line)?;
                    i = next;
                    Tok::Char(c)
                }
                '$' => {
                    let start = i;
                    i += 1;
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                    Tok::Var(chars[start..i].iter().collect())
                }
                '.' if !chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                    i += 1;
                    if i < chars.len() && (chars[i].is_alphabetic() || chars[i] == '_') {
                        let start = i;
                        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                            i += 1;
                        }
                        Tok::Field(chars[start..i].iter().collect())
                    } else {
                        Tok::Dot
                    }
                }
                c if c.is_ascii_digit()
                    || ((c == '-' || c == '+' || c == '.')
                        && chars
                            .get(i + 1)
                            .is_some_and(|d| d.is_ascii_digit() || *d == '.')) =>
                {
                    let start = i;
                    i += 1;
                    while i < chars.len()
                        && (chars[i].is_ascii_alphanumeric()
                            || chars[i] == '.'
                            || chars[i] == '_'
                            || ((chars[i] == '+' || chars[i] == '-')
                                && matches!(chars[i - 1], 'e' | 'E' | 'p' | 'P')))
                    {
                        i += 1;
                    }
                    Tok::Number(chars[start..i].iter().collect())
                }
                c if c.is_alphabetic() || c == '_' => {
                    let start = i;
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                    Tok::Ident(chars[start..i].iter().collect())
                }
                other => {
                    return Err(ParseError {
                        line,
                        message: format!("unexpected {other:?} in command"),
                    });
                }
            };
            out.push(Token {
                tok,
                line,
                spaced: i_start > before,
            });
        }
    }
    Ok(out)
}

fn lex_quoted(chars: &[char], start: usize, line: usize) -> PResult<(String, usize)> {
    let mut s = String::new();
    let mut i = start + 1;
    let err = |m: &str| ParseError {
        line,
        message: m.to_string(),
    };
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(err("unterminated quoted string"));
        };
        match c {
            '"' => return Ok((s, i + 1)),
            '\n' => return Err(err("unterminated quoted string")),
            '\\' => {
                let (ch, next) = lex_escape(chars, i, line, '"')?;
                s.push(ch);
                i = next;
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
}

fn lex_char(chars: &[char], start: usize, line: usize) -> PResult<(char, usize)> {
    let err = || ParseError {
        line,
        message: "malformed character constant".into(),
    };
    let (c, next) = match chars.get(start + 1) {
        Some('\\') => lex_escape(chars, start + 1, line, '\'')?,
        Some(&c) if c != '\'' && c != '\n' => (c, start + 2),
        _ => return Err(err()),
    };
    if chars.get(next) != Some(&'\'') {
        return Err(err());
    }
    Ok((c, next + 1))
}

/// Decodes a Go escape sequence starting at the backslash `chars[i]`.
fn lex_escape(chars: &[char], i: usize, line: usize, quote: char) -> PResult<(char, usize)> {
    let err = || ParseError {
        line,
        message: "invalid escape sequence in quoted string".into(),
    };
    let c = *chars.get(i + 1).ok_or_else(err)?;
    let hex = |n: usize| -> PResult<(char, usize)> {
        let digits: String = chars
            .get(i + 2..i + 2 + n)
            .ok_or_else(err)?
            .iter()
            .collect();
        let v = u32::from_str_radix(&digits, 16).map_err(|_| err())?;
        Ok((char::from_u32(v).ok_or_else(err)?, i + 2 + n))
    };
    Ok(match c {
        'n' => ('\n', i + 2),
        't' => ('\t', i + 2),
        'r' => ('\r', i + 2),
        'a' => ('\u{7}', i + 2),
        'b' => ('\u{8}', i + 2),
        'f' => ('\u{c}', i + 2),
        'v' => ('\u{b}', i + 2),
        '\\' => ('\\', i + 2),
        'x' => hex(2)?,
        'u' => hex(4)?,
        'U' => hex(8)?,
        '0'..='7' => {
            let digits: String = chars.get(i + 1..i + 4).ok_or_else(err)?.iter().collect();
            let v = u32::from_str_radix(&digits, 8).map_err(|_| err())?;
            (char::from_u32(v).ok_or_else(err)?, i + 4)
        }
        c if c == quote => (c, i + 2),
        _ => return Err(err()),
    })
}

/// The result of parsing: the main body and the `{{define}}`d templates.
pub(crate) struct Parsed {
    pub root: List,
    pub defines: BTreeMap<String, List>,
}

/// Parses `text`; `vars` are the variables already in scope besides `$`, `funcs` says which
/// function names exist (Go rejects unknown ones at parse time).
pub(crate) fn parse(text: &str, vars: &[&str], funcs: &dyn Fn(&str) -> bool) -> PResult<Parsed> {
    let tokens = lex(text)?;
    let mut scope = vec!["$".to_string()];
    scope.extend(vars.iter().map(|v| v.to_string()));
    let mut p = Parser {
        depth: 0,
        tokens,
        pos: 0,
        funcs,
        vars: scope,
        defines: BTreeMap::new(),
        range_depth: 0,
    };
    let (root, end) = p.list()?;
    if let Some(end) = end {
        return Err(ParseError {
            line: end.line,
            message: format!("unexpected {{{{{}}}}}", end.word),
        });
    }
    Ok(Parsed {
        root,
        defines: p.defines,
    })
}

/// Deepest nesting of blocks and parentheses accepted, so hostile input cannot overflow the
/// stack.
const MAX_NESTING: usize = 100;

struct Parser<'a> {
    depth: usize,
    tokens: Vec<Token>,
    pos: usize,
    funcs: &'a dyn Fn(&str) -> bool,
    vars: Vec<String>,
    defines: BTreeMap<String, List>,
    range_depth: usize,
}

/// The keyword action that ended a list (`end` or `else`), with what follows `else`.
struct ListEnd {
    word: String,
    line: usize,
}

const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn line(&self) -> usize {
        self.peek()
            .or_else(|| self.tokens.last())
            .map_or(1, |t| t.line)
    }

    fn err<T>(&self, message: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            line: self.line(),
            message: message.into(),
        })
    }

    fn expect(&mut self, tok: Tok, what: &str) -> PResult<()> {
        match self.next() {
            Some(t) if t.tok == tok => Ok(()),
            Some(t) => Err(ParseError {
                line: t.line,
                message: format!("unexpected {} in {what}", describe(&t.tok)),
            }),
            None => self.err(format!("unexpected EOF in {what}")),
        }
    }

    /// Parses nodes until EOF or an `{{end}}`/`{{else ...}}`, which is consumed up to the word.
    fn list(&mut self) -> PResult<(List, Option<ListEnd>)> {
        self.depth += 1;
        let r = self.list_inner();
        self.depth -= 1;
        r
    }

    fn list_inner(&mut self) -> PResult<(List, Option<ListEnd>)> {
        if self.depth > MAX_NESTING {
            return self.err("template nesting too deep");
        }
        let mut nodes = Vec::new();
        while let Some(t) = self.next() {
            match t.tok {
                Tok::Text(s) => nodes.push(Node::Text(s)),
                Tok::Open => {
                    let line = t.line;
                    if let Some(Tok::Ident(word)) = self.peek_tok()
                        && KEYWORDS.contains(&word.as_str())
                    {
                        let word = word.clone();
                        self.pos += 1;
                        match word.as_str() {
                            "end" => {
                                self.expect(Tok::Close, "end")?;
                                return Ok((nodes, Some(ListEnd { word, line })));
                            }
                            "else" => return Ok((nodes, Some(ListEnd { word, line }))),
                            "if" => nodes.push(self.branch(BranchKind::If, line)?),
                            "with" => nodes.push(self.branch(BranchKind::With, line)?),
                            "range" => nodes.push(self.range(line)?),
                            "template" => nodes.push(self.template(line)?),
                            "define" => self.define()?,
                            "block" => nodes.push(self.block(line)?),
                            "break" | "continue" => {
                                if self.range_depth == 0 {
                                    return self
                                        .err(format!("{{{{{word}}}}} outside {{{{range}}}}"));
                                }
                                self.expect(Tok::Close, &word)?;
                                nodes.push(if word == "break" {
                                    Node::Break
                                } else {
                                    Node::Continue
                                });
                            }
                            _ => unreachable!("all keywords handled"),
                        }
                        continue;
                    }
                    let pipe = self.pipeline("command", true)?;
                    nodes.push(Node::Action { line, pipe });
                }
                other => return self.err(format!("unexpected {}", describe(&other))),
            }
        }
        Ok((nodes, None))
    }

    fn branch(&mut self, kind: BranchKind, line: usize) -> PResult<Node> {
        let mark = self.vars.len();
        let what = if kind == BranchKind::If { "if" } else { "with" };
        let mut arms = Vec::new();
        let mut otherwise = None;
        let mut pipe = self.pipeline(what, true)?;
        loop {
            let (body, end) = self.list()?;
            arms.push((pipe, body));
            let Some(end) = end else {
                return self.err(format!("unexpected EOF in {what}"));
            };
            if end.word == "end" {
                break;
            }
            // `else`, possibly `else if` / `else with` of the same kind.
            match self.peek_tok() {
                Some(Tok::Close) => {
                    self.pos += 1;
                    let (body, end) = self.list()?;
                    match end {
                        Some(e) if e.word == "end" => {}
                        Some(e) => {
                            return Err(ParseError {
                                line: e.line,
                                message: format!("expected end; found {{{{{}}}}}", e.word),
                            });
                        }
                        None => return self.err(format!("unexpected EOF in {what}")),
                    }
                    otherwise = Some(body);
                    break;
                }
                Some(Tok::Ident(w)) if w == what => {
                    self.pos += 1;
                    pipe = self.pipeline(what, true)?;
                }
                _ => return self.err(format!("unexpected token after else in {what}")),
            }
        }
        self.vars.truncate(mark);
        Ok(Node::Branch {
            kind,
            line,
            arms,
            otherwise,
        })
    }

    fn range(&mut self, line: usize) -> PResult<Node> {
        let mark = self.vars.len();
        let pipe = self.pipeline("range", true)?;
        self.range_depth += 1;
        let (body, end) = self.list()?;
        self.range_depth -= 1;
        let otherwise = match end {
            None => return self.err("unexpected EOF in range"),
            Some(e) if e.word == "end" => None,
            Some(_) => {
                self.expect(Tok::Close, "range")?;
                let (body, end) = self.list()?;
                match end {
                    Some(e) if e.word == "end" => Some(body),
                    _ => return self.err("expected end in range"),
                }
            }
        };
        self.vars.truncate(mark);
        Ok(Node::Range {
            line,
            pipe,
            body,
            otherwise,
        })
    }

    fn template_name(&mut self, what: &str) -> PResult<String> {
        match self.next() {
            Some(Token {
                tok: Tok::Str(s), ..
            }) => Ok(s),
            _ => self.err(format!(
                "unexpected token in {what} clause: expected a quoted name"
            )),
        }
    }

    fn template(&mut self, line: usize) -> PResult<Node> {
        let name = self.template_name("template")?;
        let pipe = if self.peek_tok() == Some(&Tok::Close) {
            self.pos += 1;
            None
        } else {
            Some(self.pipeline("template", false)?)
        };
        Ok(Node::Template { line, name, pipe })
    }

    fn define(&mut self) -> PResult<()> {
        let name = self.template_name("define")?;
        self.expect(Tok::Close, "define")?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (body, end) = self.list()?;
        self.vars = saved;
        match end {
            Some(e) if e.word == "end" => {}
            _ => return self.err("unexpected EOF in define: expected end"),
        }
        self.defines.insert(name, body);
        Ok(())
    }

    fn block(&mut self, line: usize) -> PResult<Node> {
        let name = self.template_name("block")?;
        let pipe = self.pipeline("block", false)?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (body, end) = self.list()?;
        self.vars = saved;
        match end {
            Some(e) if e.word == "end" => {}
            _ => return self.err("unexpected EOF in block: expected end"),
        }
        self.defines.insert(name.clone(), body);
        Ok(Node::Template {
            line,
            name,
            pipe: Some(pipe),
        })
    }

    /// Parses a pipeline up to and including the closing `}}` (or `)` when `closer` is RParen).
    fn pipeline(&mut self, what: &str, allow_decl: bool) -> PResult<Pipeline> {
        self.pipeline_until(what, allow_decl, Tok::Close)
    }

    fn pipeline_until(&mut self, what: &str, allow_decl: bool, closer: Tok) -> PResult<Pipeline> {
        let mut pipe = Pipeline::default();
        // Declarations: `$x :=`, `$x =`, `$i, $v :=`.
        if allow_decl {
            let save = self.pos;
            let mut names = Vec::new();
            while let Some(Tok::Var(v)) = self.peek_tok() {
                names.push(v.clone());
                self.pos += 1;
                match self.peek_tok() {
                    Some(Tok::Comma) if names.len() == 1 => {
                        self.pos += 1;
                    }
                    Some(Tok::Declare) => {
                        self.pos += 1;
                        pipe.decls = std::mem::take(&mut names);
                        break;
                    }
                    Some(Tok::Assign) => {
                        self.pos += 1;
                        pipe.decls = std::mem::take(&mut names);
                        pipe.assign = true;
                        break;
                    }
                    _ => break,
                }
            }
            if pipe.decls.is_empty() {
                self.pos = save;
            } else if pipe.assign {
                for v in &pipe.decls {
                    if !self.vars.contains(v) {
                        return self.err(format!("undefined variable \"{v}\""));
                    }
                }
            }
        }
        loop {
            match self.peek_tok() {
                None => return self.err(format!("unexpected EOF in {what}")),
                Some(t) if *t == closer => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            let cmd = self.command(&closer)?;
            pipe.cmds.push(cmd);
            match self.peek_tok() {
                Some(Tok::Pipe) => {
                    self.pos += 1;
                }
                Some(t) if *t == closer => {}
                Some(t) => {
                    let d = describe(t);
                    return self.err(format!("unexpected {d} in operand"));
                }
                None => return self.err(format!("unexpected EOF in {what}")),
            }
        }
        if pipe.cmds.is_empty() {
            return self.err(format!("missing value for {what}"));
        }
        if !pipe.assign {
            for v in &pipe.decls {
                self.vars.push(v.clone());
            }
        }
        Ok(pipe)
    }

    fn command(&mut self, closer: &Tok) -> PResult<Command> {
        let mut args = Vec::new();
        loop {
            match self.peek_tok() {
                Some(Tok::Pipe) | None => break,
                Some(t) if t == closer => break,
                _ => {}
            }
            args.push(self.operand()?);
        }
        if args.is_empty() {
            return self.err("missing value for command");
        }
        Ok(Command { args })
    }

    /// Field names directly attached to the preceding operand (`$labels.job`, `(x).Value`).
    fn fields(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Token {
            tok: Tok::Field(f),
            spaced: false,
            ..
        }) = self.peek()
        {
            out.push(f.clone());
            self.pos += 1;
        }
        out
    }

    fn operand(&mut self) -> PResult<Operand> {
        let Some(t) = self.next() else {
            return self.err("unexpected EOF in operand");
        };
        Ok(match t.tok {
            Tok::Dot => Operand::Dot(Vec::new()),
            Tok::Field(f) => {
                let mut fields = vec![f];
                fields.extend(self.fields());
                Operand::Dot(fields)
            }
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return Err(ParseError {
                        line: t.line,
                        message: format!("undefined variable \"{v}\""),
                    });
                }
                Operand::Var(v, self.fields())
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                "nil" => Operand::Nil,
                _ if (self.funcs)(&name) => Operand::Func(name),
                _ => {
                    return Err(ParseError {
                        line: t.line,
                        message: format!("function \"{name}\" not defined"),
                    });
                }
            },
            Tok::Str(s) => Operand::Str(s),
            Tok::Char(c) => Operand::Int(c as i64),
            Tok::Number(n) => parse_number(&n).ok_or_else(|| ParseError {
                line: t.line,
                message: format!("bad number syntax: \"{n}\""),
            })?,
            Tok::LParen => {
                if self.depth > MAX_NESTING {
                    return self.err("template nesting too deep");
                }
                self.depth += 1;
                let pipe = self.pipeline_until("parenthesized pipeline", true, Tok::RParen);
                self.depth -= 1;
                Operand::Sub(Box::new(pipe?), self.fields())
            }
            other => {
                return Err(ParseError {
                    line: t.line,
                    message: format!("unexpected {} in operand", describe(&other)),
                });
            }
        })
    }
}

fn parse_number(n: &str) -> Option<Operand> {
    let clean = n.replace('_', "");
    let (neg, body) = match clean.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let int = if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()
    } else if let Some(b) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
        i64::from_str_radix(b, 2).ok()
    } else if let Some(o) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
        i64::from_str_radix(o, 8).ok()
    } else if body.len() > 1 && body.starts_with('0') && body.chars().all(|c| c.is_ascii_digit()) {
        i64::from_str_radix(&body[1..], 8).ok()
    } else {
        body.parse::<i64>().ok()
    };
    if let Some(i) = int {
        return Some(Operand::Int(if neg { -i } else { i }));
    }
    // Like Go, a constant written with `.`, an exponent or an overflowing integer is a float.
    let f: f64 = body.parse().ok()?;
    Some(Operand::Float(if neg { -f } else { f }))
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Text(_) => "text".into(),
        Tok::Open => "\"{{\"".into(),
        Tok::Close => "\"}}\"".into(),
        Tok::Ident(s) => format!("<{s}>"),
        Tok::Field(s) => format!("<.{s}>"),
        Tok::Dot => "<.>".into(),
        Tok::Var(s) => format!("<{s}>"),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Number(s) => s.clone(),
        Tok::Char(c) => format!("{c:?}"),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::Pipe => "\"|\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Comma => "\",\"".into(),
    }
}
