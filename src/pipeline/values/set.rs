//! The `--set` family and `-f/--values`, typed as Helm types them (helm's `pkg/strvals`).
//!
//! One argument holds comma-separated assignments, `SERVICE.key.path=value,SERVICE.other=x`;
//! the first path segment is always the service. Paths take list indexes (`api.hosts[0]=a`,
//! `api.list[0].name=x`), a backslash escapes the next character (`api.annotations.a\.b=c`,
//! `api.x=a\,b`), and `{a,b,c}` is a list. Values of `--set` are typed like helm's `typedVal`:
//! `true`/`false` (any case) are booleans, `null` (any case) is null, an integer that fits an
//! `i64` and does not start with `0` (or is `0`) is a number, and everything else — floats like
//! `1.10` included, and the empty value — is a string. `--set-string` keeps every value a
//! string, `--set-file` reads the value's path from the caller's disk, `--set-json` parses the
//! value as JSON (an empty one is null).
//!
//! `-f/--values FILE` is a YAML file from the caller's disk whose top-level keys are service
//! names and whose values are merged, Helm-style, into those services' values.

use std::path::Path;

use serde_json::Value;

/// Helm's bounds: the largest list index and the deepest key path.
const MAX_INDEX: usize = 65_536;
const MAX_DEPTH: usize = 30;

/// Which flag an argument came with: how its values are typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetKind {
    /// `--set`: helm's typing.
    Typed,
    /// `--set-string`: always a string.
    String,
    /// `--set-file`: the content of the file the value names.
    File,
    /// `--set-json`: a JSON value.
    Json,
}

impl SetKind {
    pub(crate) fn flag(self) -> &'static str {
        match self {
            SetKind::Typed => "--set",
            SetKind::String => "--set-string",
            SetKind::File => "--set-file",
            SetKind::Json => "--set-json",
        }
    }
}

/// One step of a key path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

impl Segment {
    /// The segment as the secret paths spell it (an index as its number).
    pub(crate) fn as_string(&self) -> String {
        match self {
            Segment::Key(k) => k.clone(),
            Segment::Index(i) => i.to_string(),
        }
    }
}

/// One assignment to a service's values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Assignment {
    pub(crate) service: String,
    /// The path below the service (empty for a whole values file's layer).
    pub(crate) path: Vec<Segment>,
    pub(crate) value: Value,
    /// Merge `value` into what is there (a values file) rather than replace it.
    pub(crate) merge: bool,
}

/// One `--set`-family argument or `-f` file: what it assigns, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SetValue {
    /// Where it came from, for messages: `--set` or `values file `x.yaml``.
    pub(crate) origin: String,
    pub(crate) assignments: Vec<Assignment>,
}

impl std::str::FromStr for SetValue {
    type Err = String;

    /// `--set`'s typing.
    fn from_str(s: &str) -> Result<Self, String> {
        SetValue::parse(s, SetKind::Typed)
    }
}

impl SetValue {
    /// Parse one argument of `kind`'s flag.
    pub(crate) fn parse(arg: &str, kind: SetKind) -> Result<SetValue, String> {
        let assignments = Parser {
            chars: arg.chars().collect(),
            pos: 0,
            kind,
        }
        .assignments()
        .map_err(|e| format!("{e} in `{arg}` (expected SERVICE.KEY=VALUE[,SERVICE.KEY=VALUE…], e.g. `api.image.tag=1.10`)"))?;
        if assignments.is_empty() {
            return Err(format!(
                "`{arg}` assigns nothing (expected SERVICE.KEY=VALUE, e.g. `api.replicas=2`)"
            ));
        }
        Ok(SetValue {
            origin: kind.flag().to_owned(),
            assignments,
        })
    }

    /// `-f/--values FILE`: a YAML mapping of service name → that service's values.
    pub(crate) fn values_file(path: &Path) -> Result<SetValue, String> {
        let shown = path.display();
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read values file `{shown}`: {e}"))?;
        crate::yaml::check_expansion(&text)
            .map_err(|e| format!("values file `{shown}` is too large: {e}"))?;
        let value: Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("values file `{shown}` is not valid YAML: {e}"))?;
        let services = match value {
            Value::Object(m) => m,
            Value::Null => Default::default(),
            _ => {
                return Err(format!(
                    "values file `{shown}` is not a mapping of service names to their values, like `api: {{replicas: 2}}`"
                ))
            }
        };
        let mut assignments = Vec::new();
        for (service, values) in services {
            let values = match values {
                Value::Object(_) => values,
                Value::Null => continue,
                _ => {
                    return Err(format!(
                        "values file `{shown}`: `{service}` must map to a mapping of that service's values, like `{service}: {{replicas: 2}}`"
                    ))
                }
            };
            assignments.push(Assignment {
                service,
                path: Vec::new(),
                value: values,
                merge: true,
            });
        }
        Ok(SetValue {
            origin: format!("values file `{shown}`"),
            assignments,
        })
    }
}

/// helm's `typedVal`.
pub(crate) fn typed(raw: &str) -> Value {
    if raw.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if raw.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if raw.eq_ignore_ascii_case("null") {
        return Value::Null;
    }
    if raw == "0" {
        return Value::from(0i64);
    }
    if !raw.is_empty() && !raw.starts_with('0') {
        if let Ok(n) = raw.parse::<i64>() {
            return Value::from(n);
        }
    }
    Value::String(raw.to_owned())
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
    kind: SetKind,
}

impl Parser {
    fn assignments(mut self) -> Result<Vec<Assignment>, String> {
        let mut out = Vec::new();
        while self.pos < self.chars.len() {
            out.push(self.assignment()?);
        }
        Ok(out)
    }

    /// Characters up to one of `stop` (returned, consumed), or the end (`None`); a backslash
    /// takes the next character as it is.
    fn until(&mut self, stop: &[char]) -> (String, Option<char>) {
        let mut text = String::new();
        while let Some(&c) = self.chars.get(self.pos) {
            self.pos += 1;
            if stop.contains(&c) {
                return (text, Some(c));
            }
            if c == '\\' {
                if let Some(&next) = self.chars.get(self.pos) {
                    self.pos += 1;
                    text.push(next);
                }
                continue;
            }
            text.push(c);
        }
        (text, None)
    }

    fn assignment(&mut self) -> Result<Assignment, String> {
        let mut path: Vec<Segment> = Vec::new();
        'key: loop {
            let (k, last) = self.until(&['=', '[', ',', '.']);
            if k.is_empty() {
                return Err(match last {
                    None | Some(',') if path.is_empty() => "an empty assignment".to_owned(),
                    _ if path.is_empty() => "an empty service name".to_owned(),
                    _ => format!("an empty key after `{}`", show_path(&path, "")),
                });
            }
            match last {
                None | Some(',') => {
                    return Err(format!("key `{}` has no value", show_path(&path, &k)));
                }
                Some('.') => {
                    path.push(Segment::Key(k));
                    if path.len() > MAX_DEPTH {
                        return Err(format!("a key path deeper than {MAX_DEPTH}"));
                    }
                    continue 'key;
                }
                Some('=') => {
                    path.push(Segment::Key(k));
                    break 'key;
                }
                Some(_) => {
                    // `[`: one index or more, then `.`, `=` or another index.
                    path.push(Segment::Key(k));
                    match self.indexes(&mut path)? {
                        AfterIndex::Key => continue 'key,
                        AfterIndex::Value => break 'key,
                    }
                }
            }
        }
        let Some(Segment::Key(service)) = path.first().cloned() else {
            unreachable!("a path starts with a key");
        };
        if path.len() < 2 {
            return Err(format!(
                "`{service}` must name a service and a key, like `{service}.replicas`"
            ));
        }
        if matches!(path[1], Segment::Index(_)) {
            return Err(format!(
                "`{}` indexes the service itself; name a key of it, like `{service}.list[0]`",
                show_path(&path, "")
            ));
        }
        let value = self.value(&show_path(&path, ""))?;
        path.remove(0);
        Ok(Assignment {
            service,
            path,
            value,
            merge: false,
        })
    }

    /// The indexes after a key (`[0][1]`), up to what follows them.
    fn indexes(&mut self, path: &mut Vec<Segment>) -> Result<AfterIndex, String> {
        loop {
            let (index, last) = self.until(&[']']);
            if last.is_none() {
                return Err(format!(
                    "an unclosed index `[{index}` after `{}`",
                    show_path(path, "")
                ));
            }
            let i: usize = index.trim().parse().map_err(|_| {
                format!(
                    "index `[{index}]` of `{}` is not a number ≥ 0",
                    show_path(path, "")
                )
            })?;
            if i > MAX_INDEX {
                return Err(format!(
                    "index {i} of `{}` is over the largest, {MAX_INDEX}",
                    show_path(path, "")
                ));
            }
            path.push(Segment::Index(i));
            let (rest, last) = self.until(&['[', '.', '=']);
            if !rest.is_empty() {
                return Err(format!(
                    "unexpected `{rest}` after index `[{i}]` of `{}`",
                    show_path(path, "")
                ));
            }
            match last {
                Some('[') => continue,
                Some('.') => return Ok(AfterIndex::Key),
                Some(_) => return Ok(AfterIndex::Value),
                None => return Err(format!("key `{}` has no value", show_path(path, ""))),
            }
        }
    }

    fn value(&mut self, key: &str) -> Result<Value, String> {
        if self.kind == SetKind::Json {
            return self.json(key);
        }
        if self.chars.get(self.pos) == Some(&'{') {
            self.pos += 1;
            let mut list = Vec::new();
            loop {
                let (item, last) = self.until(&[',', '}']);
                match last {
                    None => return Err(format!("the list of `{key}` does not end with `}}`")),
                    Some(',') => list.push(self.read(&item, key)?),
                    Some(_) => {
                        list.push(self.read(&item, key)?);
                        if self.chars.get(self.pos) == Some(&',') {
                            self.pos += 1;
                        }
                        return Ok(Value::Array(list));
                    }
                }
            }
        }
        let (raw, _) = self.until(&[',']);
        self.read(&raw, key)
    }

    fn read(&self, raw: &str, key: &str) -> Result<Value, String> {
        Ok(match self.kind {
            SetKind::Typed => typed(raw),
            SetKind::String | SetKind::Json => Value::String(raw.to_owned()),
            SetKind::File => {
                if raw.is_empty() {
                    return Err(format!("`{key}` names no file"));
                }
                Value::String(
                    std::fs::read_to_string(raw)
                        .map_err(|e| format!("cannot read file `{raw}` for `{key}`: {e}"))?,
                )
            }
        })
    }

    /// helm's `--set-json` value: blank is null; after the JSON, a comma or the end.
    fn json(&mut self, key: &str) -> Result<Value, String> {
        if self.blank_then_end() {
            return Ok(Value::Null);
        }
        let rest: String = self.chars[self.pos..].iter().collect();
        let mut stream = serde_json::Deserializer::from_str(&rest).into_iter::<Value>();
        let value = match stream.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(format!("the value of `{key}` is not JSON: {e}")),
            None => Value::Null,
        };
        let used = stream.byte_offset();
        self.pos += rest[..used].chars().count();
        if !self.blank_then_end() {
            return Err(format!(
                "after the JSON value of `{key}`, expected `,` or the end"
            ));
        }
        Ok(value)
    }

    /// Skip blanks; true (and the comma consumed) at a comma or the end.
    fn blank_then_end(&mut self) -> bool {
        while let Some(&c) = self.chars.get(self.pos) {
            if c == ',' {
                self.pos += 1;
                return true;
            }
            if !c.is_whitespace() {
                return false;
            }
            self.pos += 1;
        }
        true
    }
}

/// What follows the indexes of a key: another key, or the value.
enum AfterIndex {
    Key,
    Value,
}

/// `path` (and a key `k` after it) as written on the command line: `api.list[0].name`.
fn show_path(path: &[Segment], k: &str) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Segment::Key(key) if s.is_empty() => s.push_str(key),
            Segment::Key(key) => {
                s.push('.');
                s.push_str(key);
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if !k.is_empty() {
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(k);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The one assignment of `arg` under `kind`, as (path below the service, value).
    fn one(arg: &str, kind: SetKind) -> (Vec<Segment>, Value) {
        let set = SetValue::parse(arg, kind).unwrap_or_else(|e| panic!("{arg}: {e}"));
        assert_eq!(set.assignments.len(), 1, "{arg}");
        let a = set.assignments.into_iter().next().unwrap();
        assert_eq!(a.service, "api", "{arg}");
        (a.path, a.value)
    }

    fn key(k: &str) -> Segment {
        Segment::Key(k.into())
    }

    /// helm's documented `--set` typing (helm.sh/docs/intro/using_helm, "The Format and
    /// Limitations of --set") and `typedVal`.
    #[test]
    fn set_values_are_typed_as_helm_types_them() {
        let table: &[(&str, Value)] = &[
            ("api.x=2", json!(2)),
            ("api.x=0", json!(0)),
            ("api.x=-7", json!(-7)),
            ("api.x=+7", json!(7)),
            ("api.x=9223372036854775807", json!(9223372036854775807i64)),
            // Too long for an i64, leading zeros, floats and versions stay strings.
            ("api.x=9223372036854775808", json!("9223372036854775808")),
            ("api.x=007", json!("007")),
            ("api.x=00", json!("00")),
            ("api.x=1.10", json!("1.10")),
            ("api.x=1.5", json!("1.5")),
            ("api.x=1e3", json!("1e3")),
            ("api.x=0x1F", json!("0x1F")),
            ("api.x=true", json!(true)),
            ("api.x=FALSE", json!(false)),
            ("api.x=True", json!(true)),
            ("api.x=yes", json!("yes")),
            ("api.x=null", json!(null)),
            ("api.x=NULL", json!(null)),
            ("api.x=~", json!("~")),
            ("api.x=", json!("")),
            ("api.x=v1.2", json!("v1.2")),
            ("api.x=[1]", json!("[1]")),
            ("api.x=a=b", json!("a=b")),
            ("api.x= spaced ", json!(" spaced ")),
            ("api.x={a,b,c}", json!(["a", "b", "c"])),
            ("api.x={1,true,null,1.10}", json!([1, true, null, "1.10"])),
            ("api.x={}", json!([""])),
            ("api.x=a\\,b", json!("a,b")),
            ("api.x={a\\,b,c}", json!(["a,b", "c"])),
            ("api.x=C:\\\\dir", json!("C:\\dir")),
        ];
        for (arg, want) in table {
            assert_eq!(&one(arg, SetKind::Typed).1, want, "{arg}");
        }
    }

    #[test]
    fn set_string_keeps_every_value_a_string() {
        let table: &[(&str, Value)] = &[
            ("api.x=2", json!("2")),
            ("api.x=true", json!("true")),
            ("api.x=null", json!("null")),
            ("api.x=", json!("")),
            ("api.x=1.10", json!("1.10")),
            ("api.x={1,true}", json!(["1", "true"])),
        ];
        for (arg, want) in table {
            assert_eq!(&one(arg, SetKind::String).1, want, "{arg}");
        }
    }

    #[test]
    fn set_json_parses_json() {
        let table: &[(&str, Value)] = &[
            ("api.x=1.10", json!(1.1)),
            ("api.x=\"1.10\"", json!("1.10")),
            (
                "api.x={\"a\":[1,{\"b\":true}]}",
                json!({"a": [1, {"b": true}]}),
            ),
            ("api.x=[1, \"two\"]", json!([1, "two"])),
            ("api.x=null", json!(null)),
            ("api.x=", json!(null)),
            ("api.x[1]={\"k\":\"v\"}", json!({"k": "v"})),
        ];
        for (arg, want) in table {
            assert_eq!(&one(arg, SetKind::Json).1, want, "{arg}");
        }
        let set = SetValue::parse("api.a={\"x\":1},api.b=[2]", SetKind::Json).unwrap();
        let values: Vec<_> = set.assignments.iter().map(|a| a.value.clone()).collect();
        assert_eq!(values, [json!({"x": 1}), json!([2])]);
        for bad in ["api.x={", "api.x=1 2", "api.x=nope"] {
            let e = SetValue::parse(bad, SetKind::Json).unwrap_err();
            assert!(e.contains("`api.x`"), "{bad}: {e}");
        }
    }

    #[test]
    fn set_file_reads_the_file_as_a_string() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cfg.txt");
        std::fs::write(&file, "1.10\nline: two\n").unwrap();
        let (path, value) = one(&format!("api.config={}", file.display()), SetKind::File);
        assert_eq!(path, [key("config")]);
        assert_eq!(value, json!("1.10\nline: two\n"));
        let e = SetValue::parse("api.config=/no/such/file", SetKind::File).unwrap_err();
        assert!(
            e.starts_with("cannot read file `/no/such/file` for `api.config`: "),
            "{e}"
        );
    }

    #[test]
    fn paths_take_indexes_and_escaped_dots() {
        let table: &[(&str, Vec<Segment>)] = &[
            ("api.image.tag=1", vec![key("image"), key("tag")]),
            ("api.hosts[0]=a", vec![key("hosts"), Segment::Index(0)]),
            (
                "api.list[2].name=a",
                vec![key("list"), Segment::Index(2), key("name")],
            ),
            (
                "api.m[1][0]=a",
                vec![key("m"), Segment::Index(1), Segment::Index(0)],
            ),
            (
                "api.annotations.kubernetes\\.io/ingress\\.class=nginx",
                vec![key("annotations"), key("kubernetes.io/ingress.class")],
            ),
            ("api.a\\=b=c", vec![key("a=b")]),
        ];
        for (arg, want) in table {
            assert_eq!(&one(arg, SetKind::Typed).0, want, "{arg}");
        }
    }

    #[test]
    fn commas_separate_assignments_each_naming_its_service() {
        let set: SetValue = "api.a=1,web.b.c=x,api.d={1,2},api.e=".parse().unwrap();
        let got: Vec<(&str, Vec<Segment>, Value)> = set
            .assignments
            .iter()
            .map(|a| (a.service.as_str(), a.path.clone(), a.value.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("api", vec![key("a")], json!(1)),
                ("web", vec![key("b"), key("c")], json!("x")),
                ("api", vec![key("d")], json!([1, 2])),
                ("api", vec![key("e")], json!("")),
            ]
        );
        assert_eq!(set.origin, "--set");
        // A trailing comma ends the list, as with helm.
        assert_eq!("api.a=1,".parse::<SetValue>().unwrap().assignments.len(), 1);
    }

    #[test]
    fn malformed_arguments_say_what_is_wrong() {
        let table: &[(&str, &str)] = &[
            ("replicas=2", "`replicas` must name a service and a key"),
            ("api.replicas", "key `api.replicas` has no value"),
            ("api.replicas,web.x=1", "key `api.replicas` has no value"),
            ("api..x=1", "an empty key after `api`"),
            ("=1", "an empty service name"),
            ("", "assigns nothing"),
            (",", "an empty assignment"),
            ("api[0]=1", "`api[0]` indexes the service itself"),
            ("api.x[a]=1", "index `[a]` of `api.x` is not a number"),
            ("api.x[-1]=1", "index `[-1]` of `api.x` is not a number"),
            ("api.x[65537]=1", "over the largest, 65536"),
            ("api.x[0=1", "an unclosed index"),
            ("api.x[0]y=1", "unexpected `y` after index `[0]`"),
            ("api.x={a,b", "the list of `api.x` does not end with `}`"),
        ];
        for (arg, want) in table {
            let e = arg.parse::<SetValue>().unwrap_err();
            assert!(e.contains(want), "{arg}: {e}");
            assert!(e.contains("SERVICE.KEY=VALUE"), "{arg}: {e}");
        }
        let deep = format!("api.{}=1", ["k"; 31].join("."));
        assert!(deep
            .parse::<SetValue>()
            .unwrap_err()
            .contains("deeper than 30"));
    }

    #[test]
    fn a_values_file_maps_services_to_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.yaml");
        std::fs::write(&file, "api:\n  image: {tag: '1.10'}\n  replicas: 3\nweb:\n").unwrap();
        let set = SetValue::values_file(&file).unwrap();
        assert_eq!(set.origin, format!("values file `{}`", file.display()));
        assert_eq!(
            set.assignments,
            [Assignment {
                service: "api".into(),
                path: Vec::new(),
                value: json!({"image": {"tag": "1.10"}, "replicas": 3}),
                merge: true,
            }]
        );
        let bomb = crate::yaml::bombs::quadratic_alias(2_000);
        for (text, want) in [
            ("- a\n", "is not a mapping of service names"),
            ("api: 3\n", "`api` must map to a mapping"),
            ("api: [\n", "is not valid YAML"),
            (bomb.as_str(), "is too large"),
        ] {
            std::fs::write(&file, text).unwrap();
            let e = SetValue::values_file(&file).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        let e = SetValue::values_file(&dir.path().join("nope.yaml")).unwrap_err();
        assert!(e.starts_with("cannot read values file `"), "{e}");
    }
}
