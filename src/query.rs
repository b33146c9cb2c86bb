//! User queries, made safe: `--where` filters parsed into parameterised SQL over a whitelist of
//! columns (never pasted as text), and the guard of `scalelab sql` that lets only single
//! read-only statements through (on top of a read-only connection).

use crate::error::{Error, Result};

/// A value bound to a `?` placeholder.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    /// A number.
    Number(f64),
    /// A string.
    Text(String),
}

/// A parsed `--where` filter: SQL with `?` placeholders and the values to bind, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    /// The SQL condition (columns from the whitelist, operators, placeholders).
    pub sql: String,
    /// Values for the placeholders.
    pub params: Vec<Param>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>> {
    let err =
        |pos: usize, msg: String| Error::Query(format!("--where: {msg} at column {}", pos + 1));
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((start, Tok::Ident(chars[start..i].iter().collect())));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
            || (c == '-'
                && chars
                    .get(i + 1)
                    .is_some_and(|d| d.is_ascii_digit() || *d == '.'))
        {
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_digit()
                    || chars[i] == '.'
                    || chars[i] == 'e'
                    || chars[i] == 'E'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let v: f64 = text
                .parse()
                .map_err(|_| err(start, format!("{text:?} is not a number")))?;
            out.push((start, Tok::Num(v)));
        } else if c == '\'' || c == '"' {
            i += 1;
            let mut text = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(err(start, "unterminated string".into())),
                    Some(&q) if q == c => {
                        // A doubled quote is a literal quote, as in SQL.
                        if chars.get(i + 1) == Some(&c) {
                            text.push(c);
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    }
                    Some(&ch) => {
                        text.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((start, Tok::Str(text)));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = match two.as_str() {
                "<=" => Some("<="),
                ">=" => Some(">="),
                "!=" | "<>" => Some("!="),
                "==" => Some("="),
                _ => None,
            };
            if let Some(op) = op {
                out.push((start, Tok::Op(op)));
                i += 2;
                continue;
            }
            let tok = match c {
                '=' => Tok::Op("="),
                '<' => Tok::Op("<"),
                '>' => Tok::Op(">"),
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                other => return Err(err(start, format!("unexpected character {other:?}"))),
            };
            out.push((start, tok));
            i += 1;
        }
    }
    Ok(out)
}

/// How deep parentheses and `not` may nest in a `--where` filter. The parser recurses once per
/// level (10,000 levels overflowed the main thread's stack), and SQLite itself refuses
/// expression trees deeper than 1000 (`SQLITE_MAX_EXPR_DEPTH`); no real filter comes near 100.
pub const MAX_FILTER_DEPTH: usize = 100;

/// How many conditions (`COL op VALUE`, `COL in (…)`, `COL is null`, `COL like …`; an `in` list
/// is one) a `--where` filter may join with `and` and `or`. A chain of n conditions is n levels
/// deep in SQLite's expression tree whatever its parentheses (`a and b and c` is
/// `(a and b) and c`), and SQLite refuses trees deeper than 1000 (`SQLITE_MAX_EXPR_DEPTH`) with
/// an error that does not name the filter (2,000 conditions did). With [`MAX_FILTER_DEPTH`], the
/// deepest filter allowed is about 200 + 100 levels, well inside SQLite's limit.
pub const MAX_FILTER_CONDITIONS: usize = 200;

/// How many values a `--where` filter may hold in all (its `in` lists, mostly). SQLite takes at
/// most 32,766 bound parameters and refused more with "too many SQL variables", an error that
/// does not name the filter; this leaves room for the command's own parameters.
pub const MAX_FILTER_VALUES: usize = 10_000;

struct Parser<'a> {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    columns: &'a [&'a str],
    text_len: usize,
    params: Vec<Param>,
    /// Parentheses and `not` open around the current token.
    depth: usize,
    /// Conditions read so far.
    conditions: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.text_len, |(p, _)| *p) + 1
    }
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::Query(format!("--where: {msg} at column {}", self.at()))
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }
    /// Runs `f` one nesting level deeper, refusing to go past [`MAX_FILTER_DEPTH`].
    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Result<String>) -> Result<String> {
        if self.depth >= MAX_FILTER_DEPTH {
            return Err(self.err(format!(
                "nested more than {MAX_FILTER_DEPTH} levels deep (parentheses and NOT)"
            )));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }
    fn or(&mut self) -> Result<String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            left = format!("({left} OR {})", self.and()?);
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<String> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.pos += 1;
            left = format!("({left} AND {})", self.not()?);
        }
        Ok(left)
    }
    fn not(&mut self) -> Result<String> {
        if self.keyword("not") {
            return self.nested(|p| {
                p.pos += 1;
                Ok(format!("(NOT {})", p.not()?))
            });
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<String> {
        if self.peek() == Some(&Tok::LParen) {
            return self.nested(|p| {
                p.pos += 1;
                let inner = p.or()?;
                if p.peek() != Some(&Tok::RParen) {
                    return Err(p.err("expected ')'"));
                }
                p.pos += 1;
                Ok(inner)
            });
        }
        if self.conditions >= MAX_FILTER_CONDITIONS {
            return Err(self.err(format!(
                "more than {MAX_FILTER_CONDITIONS} conditions (joined by AND and OR)"
            )));
        }
        self.conditions += 1;
        let column = match self.peek() {
            Some(Tok::Ident(name)) => {
                let lower = name.to_ascii_lowercase();
                match self.columns.iter().find(|c| **c == lower) {
                    Some(c) => c.to_string(),
                    None => {
                        return Err(self.err(format!(
                            "unknown column {name:?} (columns: {})",
                            self.columns.join(", ")
                        )));
                    }
                }
            }
            Some(_) => return Err(self.err("expected a column name")),
            None => return Err(self.err("expected a condition")),
        };
        self.pos += 1;
        match self.peek().cloned() {
            Some(Tok::Op(op)) => {
                self.pos += 1;
                let v = self.value()?;
                self.params.push(v);
                Ok(format!("{column} {op} ?"))
            }
            Some(Tok::Ident(kw))
                if kw.eq_ignore_ascii_case("in") || kw.eq_ignore_ascii_case("not") =>
            {
                let negated = kw.eq_ignore_ascii_case("not");
                self.pos += 1;
                if negated {
                    if !self.keyword("in") {
                        return Err(self.err("expected IN after NOT"));
                    }
                    self.pos += 1;
                }
                if self.peek() != Some(&Tok::LParen) {
                    return Err(self.err("expected '(' after IN"));
                }
                self.pos += 1;
                let mut n = 0;
                loop {
                    if self.params.len() >= MAX_FILTER_VALUES {
                        return Err(self.err(format!(
                            "more than {MAX_FILTER_VALUES} values in all (in IN lists)"
                        )));
                    }
                    let v = self.value()?;
                    self.params.push(v);
                    n += 1;
                    match self.peek() {
                        Some(Tok::Comma) => self.pos += 1,
                        Some(Tok::RParen) => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.err("expected ',' or ')' in the IN list")),
                    }
                }
                let marks = vec!["?"; n].join(", ");
                Ok(format!(
                    "{column} {}IN ({marks})",
                    if negated { "NOT " } else { "" }
                ))
            }
            Some(Tok::Ident(kw)) if kw.eq_ignore_ascii_case("is") => {
                self.pos += 1;
                let negated = self.keyword("not");
                if negated {
                    self.pos += 1;
                }
                if !self.keyword("null") {
                    return Err(self.err("expected NULL after IS"));
                }
                self.pos += 1;
                Ok(format!(
                    "{column} IS {}NULL",
                    if negated { "NOT " } else { "" }
                ))
            }
            Some(Tok::Ident(kw)) if kw.eq_ignore_ascii_case("like") => {
                self.pos += 1;
                let v = self.value()?;
                self.params.push(v);
                Ok(format!("{column} LIKE ?"))
            }
            _ => Err(self.err(format!(
                "expected an operator (=, !=, <, <=, >, >=, in, is null, like) after {column}"
            ))),
        }
    }
    fn value(&mut self) -> Result<Param> {
        let v = match self.peek() {
            Some(Tok::Num(n)) => Param::Number(*n),
            Some(Tok::Str(s)) => Param::Text(s.clone()),
            // Booleans are stored as 0 and 1 (nesterov = false).
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("true") => Param::Number(1.0),
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("false") => Param::Number(0.0),
            // Any other bare word on the right is taken as a string (state = completed).
            Some(Tok::Ident(s))
                if !["and", "or", "not"].contains(&s.to_ascii_lowercase().as_str()) =>
            {
                Param::Text(s.clone())
            }
            _ => return Err(self.err("expected a value (a number or a 'quoted string')")),
        };
        self.pos += 1;
        Ok(v)
    }
}

/// Parses a `--where` expression over the allowed `columns` into parameterised SQL.
///
/// Grammar: comparisons `COL op VALUE` (op: `= == != <> < <= > >=`), `COL [not] in (V, …)`,
/// `COL is [not] null`, `COL like 'pat%'`, combined with `and`, `or`, `not` and parentheses.
/// Values are numbers, quoted strings, `true` and `false` (stored as 1 and 0), or a bare word,
/// taken as a string (`state = completed`); anything else is an error naming its column, as are
/// nesting deeper than [`MAX_FILTER_DEPTH`] and more than [`MAX_FILTER_CONDITIONS`] conditions.
pub fn parse_filter(text: &str, columns: &[&str]) -> Result<Filter> {
    let toks = tokenize(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        columns,
        text_len: text.chars().count(),
        params: Vec::new(),
        depth: 0,
        conditions: 0,
    };
    let sql = p.or()?;
    if p.pos < p.toks.len() {
        return Err(p.err("unexpected text after the condition"));
    }
    Ok(Filter {
        sql,
        params: p.params,
    })
}

/// Words that make a statement write or reach outside the database.
const WRITE_WORDS: [&str; 14] = [
    "insert",
    "update",
    "delete",
    "drop",
    "alter",
    "create",
    "replace",
    "attach",
    "detach",
    "vacuum",
    "reindex",
    "analyze",
    "upsert",
    "savepoint",
];

/// Checks that `sql` is one read-only statement (SELECT, WITH … SELECT, VALUES, EXPLAIN, or a
/// PRAGMA that only reads). The connection it then runs on is read-only as well.
pub fn check_read_only(sql: &str) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::Query(format!(
            "refused: {why}; `scalelab sql` only reads"
        )))
    };
    // Walk the text outside string literals, quoted identifiers and comments.
    let chars: Vec<char> = sql.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut i = 0;
    let mut ended = false;
    let mut word = String::new();
    let flush = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(word.to_ascii_lowercase());
            word.clear();
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if ended && !c.is_whitespace() && c != ';' {
            return refuse("more than one statement".into());
        }
        match c {
            '\'' | '"' | '`' | '[' => {
                flush(&mut word, &mut words);
                let close = if c == '[' { ']' } else { c };
                i += 1;
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
                words.push("<literal>".into());
                continue;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                flush(&mut word, &mut words);
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                flush(&mut word, &mut words);
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
                continue;
            }
            ';' => {
                flush(&mut word, &mut words);
                ended = true;
            }
            c if c.is_ascii_alphanumeric() || c == '_' => word.push(c),
            '=' => {
                flush(&mut word, &mut words);
                words.push("=".into());
            }
            '(' => {
                flush(&mut word, &mut words);
                // A word right before `(` is a function's name (`replace(hidden, '[', '')`),
                // not a statement's keyword.
                let mut j = i;
                while j > 0 && chars[j - 1].is_whitespace() {
                    j -= 1;
                }
                if j > 0
                    && (chars[j - 1].is_ascii_alphanumeric() || chars[j - 1] == '_')
                    && words.len() > 1
                    && let Some(last) = words.last_mut()
                {
                    *last = "<call>".into();
                }
            }
            _ => flush(&mut word, &mut words),
        }
        i += 1;
    }
    flush(&mut word, &mut words);
    let Some(first) = words.first() else {
        return refuse("empty statement".into());
    };
    // A PRAGMA's argument is a value (`PRAGMA journal_mode(DELETE)`), not a statement: SQLite's
    // own read-only test decides those (`Store::scan`).
    if let Some(w) = words
        .iter()
        .find(|w| first != "pragma" && WRITE_WORDS.contains(&w.as_str()))
    {
        return refuse(format!(
            "{} statements change the database",
            w.to_uppercase()
        ));
    }
    match first.as_str() {
        "select" | "with" | "values" | "explain" => Ok(()),
        "pragma" if !words.iter().any(|w| w == "=") => Ok(()),
        "pragma" => refuse("PRAGMA assignments change settings".into()),
        // The statements SQLite has besides those above and `WRITE_WORDS` (which begin no query).
        "begin" | "commit" | "end" | "rollback" | "release" => refuse(format!(
            "{} is not a read-only statement",
            first.to_uppercase()
        )),
        // A typo (`selec 1`) was "not a read-only statement", as if it were one.
        other => refuse(format!(
            "{} begins no SQL statement (a query begins with SELECT, WITH, VALUES, EXPLAIN or \
             PRAGMA)",
            other.to_uppercase()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: &[&str] = &["state", "lr", "batch_size", "momentum", "seed"];

    #[test]
    fn filters_become_parameterised_sql() {
        let f = parse_filter("batch_size >= 64 and lr < 0.5", COLS).unwrap();
        assert_eq!(f.sql, "(batch_size >= ? AND lr < ?)");
        assert_eq!(f.params, vec![Param::Number(64.0), Param::Number(0.5)]);
        let f = parse_filter("state = 'diverged'", COLS).unwrap();
        assert_eq!(f.sql, "state = ?");
        assert_eq!(f.params, vec![Param::Text("diverged".into())]);
        let f = parse_filter("seed in (1, 2) or not (momentum == 0.9)", COLS).unwrap();
        assert_eq!(f.sql, "(seed IN (?, ?) OR (NOT momentum = ?))");
        let f = parse_filter("lr is not null and state not in ('failed')", COLS).unwrap();
        assert_eq!(f.sql, "(lr IS NOT NULL AND state NOT IN (?))");
        let f = parse_filter("lr > 1e-3 AND lr <= -2.5E+1", COLS).unwrap();
        assert_eq!(f.params, vec![Param::Number(1e-3), Param::Number(-25.0)]);
        let f = parse_filter("state = 'it''s'", COLS).unwrap();
        assert_eq!(f.params, vec![Param::Text("it's".into())]);
        // Booleans are stored as 0 and 1; 'true' quoted stays a string.
        let f = parse_filter("seed = FALSE or seed in (true, 'true')", COLS).unwrap();
        assert_eq!(
            f.params,
            vec![
                Param::Number(0.0),
                Param::Number(1.0),
                Param::Text("true".into())
            ]
        );
    }

    #[test]
    fn bad_filters_name_the_problem() {
        let e = parse_filter("batch_size >= ", COLS)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected a value") && e.contains("column 15"),
            "{e}"
        );
        let e = parse_filter("batchsize > 3", COLS).unwrap_err().to_string();
        assert!(e.contains("unknown column \"batchsize\""), "{e}");
        let e = parse_filter("1=1; DROP TABLE runs", COLS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("';' at column 4"), "{e}");
        let e = parse_filter("1 = 1", COLS).unwrap_err().to_string();
        assert!(e.contains("expected a column name at column 1"), "{e}");
        let e = parse_filter("lr = 1; DROP TABLE runs", COLS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("';'"), "{e}");
        let e = parse_filter("lr = 1 -- comment", COLS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'-'"), "{e}");
        let e = parse_filter("state = 'x", COLS).unwrap_err().to_string();
        assert!(e.contains("unterminated"), "{e}");
        let e = parse_filter("(lr = 1", COLS).unwrap_err().to_string();
        assert!(e.contains("')'"), "{e}");
        let e = parse_filter("lr = 1 seed = 2", COLS)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unexpected text"), "{e}");
    }

    /// 10,000 nested parentheses overflowed the stack (abort, status 134); now any nesting past
    /// the limit is refused in one line that names `--where` and the limit.
    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let nest = |open: &str, depth: usize, close: &str| {
            format!("{}lr > 0{}", open.repeat(depth), close.repeat(depth))
        };
        for depth in [1, 50, MAX_FILTER_DEPTH] {
            let f = parse_filter(&nest("(", depth, ")"), COLS).unwrap();
            assert_eq!(f.sql, "lr > ?");
            let f = parse_filter(&nest("not ", depth, ""), COLS).unwrap();
            assert_eq!(f.sql.matches("NOT").count(), depth);
            // Each level mixes both, and a condition beside the nest.
            let mixed = format!("seed = 1 or {}", nest("not (", depth / 2, ")"));
            assert!(parse_filter(&mixed, COLS).is_ok(), "{depth}");
        }
        for text in [
            nest("(", MAX_FILTER_DEPTH + 1, ")"),
            nest("(", 10_000, ")"),
            nest("not ", 10_000, ""),
            nest("not (", 5_000, ")"),
        ] {
            let e = parse_filter(&text, COLS).unwrap_err().to_string();
            let want = format!("--where: nested more than {MAX_FILTER_DEPTH} levels deep");
            assert!(e.starts_with(&want) && !e.contains('\n'), "{e}");
        }
        // Siblings do not add up: many parenthesised conditions side by side are fine.
        let wide = vec!["(lr > 0)"; MAX_FILTER_CONDITIONS].join(" and ");
        assert!(parse_filter(&wide, COLS).is_ok());
    }

    /// 2,000 conditions joined by AND passed the nesting limit, and SQLite then refused the
    /// query with "Expression tree is too large (maximum depth 1000)", naming the database and
    /// not `--where`. Now a filter with more than [`MAX_FILTER_CONDITIONS`] conditions is
    /// refused in one line that names `--where` and the limit, and the deepest filter that both
    /// limits allow is one SQLite takes.
    #[test]
    fn long_flat_chains_are_refused_before_sqlite_sees_them() {
        let chain = |n: usize, op: &str| vec!["lr > 0"; n].join(op);
        for text in [
            chain(MAX_FILTER_CONDITIONS + 1, " and "),
            chain(2_000, " and "),
            chain(2_000, " OR "),
            vec!["(lr > 0 or seed in (1, 2))"; 1_000].join(" and "),
            vec!["not lr is null"; 1_000].join(" or "),
        ] {
            let e = parse_filter(&text, COLS).unwrap_err().to_string();
            let want = format!("--where: more than {MAX_FILTER_CONDITIONS} conditions");
            assert!(e.starts_with(&want) && !e.contains('\n'), "{e}");
        }
        // The error points at the first condition past the limit.
        let e = parse_filter(&chain(MAX_FILTER_CONDITIONS + 1, " and "), COLS)
            .unwrap_err()
            .to_string();
        let at = MAX_FILTER_CONDITIONS * "lr > 0 and ".len() + 1;
        assert!(e.ends_with(&format!("at column {at}")), "{e}");

        // The deepest filter allowed: a left-deep chain of MAX_FILTER_CONDITIONS whose first
        // condition sits under MAX_FILTER_DEPTH NOTs, beside another condition as `runs` joins
        // `--state` to it. SQLite prepares it; the 2,000-condition chain it refuses.
        let deepest = format!(
            "{}lr > 0 and {}",
            "not ".repeat(MAX_FILTER_DEPTH),
            chain(MAX_FILTER_CONDITIONS - 1, " or ")
        );
        let f = parse_filter(&deepest, COLS).unwrap();
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE runs (state, lr, batch_size, momentum, seed)")
            .unwrap();
        let select = |cond: &str| format!("SELECT * FROM runs WHERE state = ? AND {cond}");
        db.prepare(&select(&f.sql)).unwrap();
        let e = db
            .prepare(&select(&chain(2_000, " AND ")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("Expression tree is too large"), "{e}");
    }

    /// 40,000 values in an IN list got SQLite's "too many SQL variables", naming neither the
    /// filter nor the limit; the filter now refuses more than [`MAX_FILTER_VALUES`] in one line.
    #[test]
    fn huge_in_lists_are_refused_naming_the_filter() {
        let list = |n: usize| {
            let vals: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            format!("seed in ({})", vals.join(", "))
        };
        let f = parse_filter(&list(MAX_FILTER_VALUES), COLS).unwrap();
        assert_eq!(f.params.len(), MAX_FILTER_VALUES);
        for n in [MAX_FILTER_VALUES + 1, 40_000] {
            let e = parse_filter(&list(n), COLS).unwrap_err().to_string();
            let want = format!("--where: more than {MAX_FILTER_VALUES} values");
            assert!(e.starts_with(&want) && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn only_single_read_only_statements_pass() {
        for ok in [
            "SELECT * FROM runs",
            "select count(*) from runs;",
            "WITH t AS (SELECT 1) SELECT * FROM t",
            "SELECT 'DELETE FROM runs' AS text",
            "SELECT \"update\" FROM x -- DELETE",
            "PRAGMA table_info(runs)",
            "EXPLAIN QUERY PLAN SELECT 1",
            "SELECT replace(hidden, '[', '') FROM runs",
            "select REPLACE (hidden, ']', '') AS h, upper(state) from runs",
        ] {
            assert!(check_read_only(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("DELETE FROM runs", "DELETE"),
            ("DROP TABLE runs", "DROP"),
            ("ATTACH 'x.db' AS x", "ATTACH"),
            ("SELECT 1; DELETE FROM runs", "more than one"),
            ("SELECT 1; SELECT 2", "more than one"),
            ("WITH t AS (SELECT 1) DELETE FROM runs", "DELETE"),
            ("PRAGMA journal_mode = DELETE", "PRAGMA assignments"),
            ("PRAGMA user_version = 3", "PRAGMA"),
            ("UPDATE runs SET state = 'x'", "UPDATE"),
            ("REPLACE INTO runs(id) VALUES ('x')", "REPLACE"),
            ("INSERT INTO runs(id) VALUES ('x')", "INSERT"),
            (
                "WITH t(a) AS (SELECT 1) REPLACE INTO x(a) SELECT a FROM t",
                "REPLACE",
            ),
            ("", "empty"),
            ("BEGIN", "BEGIN is not a read-only statement"),
            // Regression: "SELEC is not a read-only statement".
            ("selec 1", "SELEC begins no SQL statement"),
        ] {
            let e = check_read_only(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.starts_with("refused"), "{bad}: {e}");
        }
    }
}
