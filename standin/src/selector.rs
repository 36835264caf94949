//! Label and field selectors, parsed and matched as the API server does
//! (apimachinery's `labels.Parse` and `fields.ParseSelector`).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Not,
    Open,
    Close,
    Comma,
    Gt,
    Lt,
}

/// Splits a label selector into tokens; identifiers run until whitespace
/// or one of the operator characters.
fn lex(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        let tok = match c {
            c if c.is_whitespace() => {
                chars.next();
                continue;
            }
            '=' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    Token::DoubleEq
                } else {
                    Token::Eq
                }
            }
            '!' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    Token::NotEq
                } else {
                    Token::Not
                }
            }
            '(' | ')' | ',' | '<' | '>' => {
                chars.next();
                match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    ',' => Token::Comma,
                    '<' => Token::Lt,
                    _ => Token::Gt,
                }
            }
            _ => {
                let mut id = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "=!(),<>".contains(c) {
                        break;
                    }
                    id.push(c);
                    chars.next();
                }
                Token::Ident(id)
            }
        };
        out.push(tok);
    }
    out
}

/// `[a-z0-9A-Z]` at both ends, `-_.` and alphanumerics inside, at most 63.
fn is_label_name(s: &str) -> bool {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !s.is_empty()
        && s.len() <= 63
        && ok_end(s.chars().next())
        && ok_end(s.chars().last())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// A label key: `name` or `prefix/name` with a DNS subdomain prefix.
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            let prefix_ok = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix
                    .split('.')
                    .all(|l| is_label_name(l) && !l.contains('_') && l.chars().all(|c| !c.is_ascii_uppercase()));
            if !prefix_ok {
                return Err(format!("invalid label key {key:?}: the prefix must be a DNS subdomain"));
            }
            name
        }
        None => key,
    };
    if is_label_name(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid label key {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', \
             and must start and end with an alphanumeric character"
        ))
    }
}

pub(crate) fn check_value(v: &str) -> Result<(), String> {
    if v.is_empty() || is_label_name(v) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {v:?}: must be 63 characters or less and consist of alphanumeric characters, \
             '-', '_' or '.', starting and ending with an alphanumeric character"
        ))
    }
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn ident(&mut self, what: &str) -> Result<String, String> {
        match self.next() {
            Some(Token::Ident(s)) => Ok(s),
            other => Err(format!("found {other:?}, expected: {what}")),
        }
    }

    /// A value after `=`; an empty value is allowed (`key=`).
    fn value(&mut self) -> Result<String, String> {
        match self.peek() {
            None | Some(Token::Comma) => Ok(String::new()),
            _ => {
                let v = self.ident("a value")?;
                check_value(&v)?;
                Ok(v)
            }
        }
    }

    /// `( v1, v2 )`; `()` is the set holding the empty value.
    fn set(&mut self) -> Result<Vec<String>, String> {
        if self.next() != Some(Token::Open) {
            return Err("expected '(' after in/notin".into());
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Token::Close) => break,
                Some(Token::Comma) => {}
                Some(Token::Ident(v)) => {
                    check_value(&v)?;
                    values.push(v);
                }
                other => return Err(format!("found {other:?} in a set of values, expected ')'")),
            }
        }
        if values.is_empty() {
            values.push(String::new());
        }
        Ok(values)
    }

    fn integer(&mut self) -> Result<i64, String> {
        let v = self.ident("an integer")?;
        v.parse().map_err(|_| format!("{v:?} is not an integer"))
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        if self.peek() == Some(&Token::Not) {
            self.next();
            let key = self.ident("a label key after '!'")?;
            check_key(&key)?;
            return Ok(Requirement::NotExists(key));
        }
        let key = self.ident("a label key")?;
        check_key(&key)?;
        let req = match self.peek() {
            None | Some(Token::Comma) => Requirement::Exists(key),
            Some(Token::Eq | Token::DoubleEq) => {
                self.next();
                Requirement::Eq(key, self.value()?)
            }
            Some(Token::NotEq) => {
                self.next();
                Requirement::NotEq(key, self.value()?)
            }
            Some(Token::Gt) => {
                self.next();
                Requirement::Gt(key, self.integer()?)
            }
            Some(Token::Lt) => {
                self.next();
                Requirement::Lt(key, self.integer()?)
            }
            Some(Token::Ident(op)) if op == "in" => {
                self.next();
                Requirement::In(key, self.set()?)
            }
            Some(Token::Ident(op)) if op == "notin" => {
                self.next();
                Requirement::NotIn(key, self.set()?)
            }
            Some(other) => return Err(format!("found {other:?}, expected an operator after {key:?}")),
        };
        Ok(req)
    }
}

/// Splits a field selector on unescaped `sep`, keeping escapes in place.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            parts.last_mut().expect("never empty").push(c);
            escaped = false;
        } else if c == '\\' {
            parts.last_mut().expect("never empty").push(c);
            escaped = true;
        } else if c == sep {
            parts.push(String::new());
        } else {
            parts.last_mut().expect("never empty").push(c);
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// The first unescaped occurrence of `op` in `term`.
fn find_op(term: &str, op: &str) -> Option<usize> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if term[i..].starts_with(op) {
            return Some(i);
        }
        i += 1;
    }
    None
}

impl Selector {
    /// Parses a label selector (`a=b,c!=d,e in (f,g),h notin (i),j,!k,l>3`).
    pub fn labels(s: &str) -> Result<Selector, String> {
        let mut p = Parser { toks: lex(s), pos: 0 };
        let mut reqs = Vec::new();
        if p.peek().is_none() {
            return Ok(Selector { reqs });
        }
        loop {
            reqs.push(
                p.requirement()
                    .map_err(|e| format!("unable to parse requirement in label selector {s:?}: {e}"))?,
            );
            match p.next() {
                None => break,
                Some(Token::Comma) => {}
                Some(other) => {
                    return Err(format!(
                        "unable to parse label selector {s:?}: found {other:?}, expected ','"
                    ))
                }
            }
        }
        Ok(Selector { reqs })
    }

    /// Parses a field selector (`a=b`, `a==b`, `a!=b`, comma = and,
    /// backslash escapes `,` `=` `!` and itself).
    pub fn fields(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Selector { reqs });
        }
        for term in split_unescaped(s, ',') {
            let found = ["!=", "==", "="]
                .iter()
                .filter_map(|op| find_op(&term, op).map(|i| (i, *op)))
                .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())));
            let Some((i, op)) = found else {
                return Err(format!("invalid selector: '{s}'; can't understand '{term}'"));
            };
            let (key, value) = (term[..i].trim().to_string(), unescape(&term[i + op.len()..]));
            if key.is_empty() {
                return Err(format!(
                    "invalid selector: '{s}'; a field selector term needs a field name"
                ));
            }
            reqs.push(if op == "!=" {
                Requirement::NotEq(key, value)
            } else {
                Requirement::Eq(key, value)
            });
        }
        Ok(Selector { reqs })
    }

    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::Gt(k, n) => get(k).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x > *n),
            Requirement::Lt(k, n) => get(k).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x < *n),
        })
    }

    /// Field paths are dotted (`spec.nodeName`); a missing field reads as "".
    pub fn matches_fields(&self, obj: &Value) -> bool {
        let get = |path: &str| {
            let v = path.split('.').try_fold(obj, |v, seg| v.get(seg));
            match v {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }
        };
        self.reqs.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == *v,
            Requirement::NotEq(k, v) => get(k) != *v,
            // Field selectors only parse into the two above.
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_requirements() {
        let pod = json!({"metadata":{"labels":{"app":"web","tier":"front","example.com/rank":"3"}}});
        let yes = [
            "",
            "app=web",
            "app==web,tier",
            "app in (web, db)",
            "app in(web)",
            "tier notin (back)",
            "!missing",
            "app!=db",
            "missing!=x",
            "missing notin (x)",
            "example.com/rank>2,example.com/rank<4",
            " app = web , tier ",
        ];
        let no = [
            "app=db",
            "missing",
            "missing=",
            "app notin (web)",
            "!app",
            "tier in (back)",
            "example.com/rank>3",
        ];
        for s in yes {
            assert!(Selector::labels(s).unwrap().matches_labels(&pod), "{s}");
        }
        for s in no {
            assert!(!Selector::labels(s).unwrap().matches_labels(&pod), "{s}");
        }
    }

    #[test]
    fn label_selector_syntax_errors() {
        for bad in [
            "a b c",
            "a=b=c",
            "app in web",
            "app in (web",
            "=web",
            "a,,b",
            "-app=x",
            "app=x y",
            "app>x",
        ] {
            assert!(Selector::labels(bad).is_err(), "{bad} parsed");
        }
        // The empty value and the empty set are allowed.
        assert_eq!(
            Selector::labels("a=,b in ()").unwrap().reqs,
            vec![
                Requirement::Eq("a".into(), "".into()),
                Requirement::In("b".into(), vec!["".into()])
            ]
        );
    }

    #[test]
    fn field_requirements() {
        let pod = json!({"metadata":{"name":"p","namespace":"default"},"spec":{"nodeName":"n1","hostNetwork":true}});
        let yes = [
            "",
            "spec.nodeName=n1",
            "spec.nodeName!=n2,metadata.namespace==default",
            "metadata.name=p",
            "spec.hostNetwork=true",
            "spec.missing=",
        ];
        for s in yes {
            assert!(Selector::fields(s).unwrap().matches_fields(&pod), "{s}");
        }
        assert!(!Selector::fields("spec.nodeName=n2").unwrap().matches_fields(&pod));
        assert!(!Selector::fields("spec.nodeName!=n1").unwrap().matches_fields(&pod));
        assert!(Selector::fields("nonsense").is_err());
        assert!(Selector::fields("=x").is_err());
        // Escapes let a value hold the separators.
        let odd = json!({"metadata":{"name":"a,b=c"}});
        assert!(Selector::fields(r"metadata.name=a\,b\=c").unwrap().matches_fields(&odd));
    }
}
