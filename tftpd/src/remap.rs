//! File name remapping in tftpd-hpa's rule language (`in.tftpd -m FILE`, `tftpd --map-file`).
//!
//! One rule per line: `operation regex [replacement]`, fields separated by white space, `#`
//! starting a comment (unless `\`-escaped). The operation is a combination of letters:
//!
//! | letter | meaning |
//! |---|---|
//! | `r` | replace the part of the name the regex matched with the replacement |
//! | `g` | repeat this rule until it no longer matches (with `r`) |
//! | `i` | match case-insensitively |
//! | `e` | if this rule matched, stop: the name is final |
//! | `s` | if this rule matched, start over from the first rule |
//! | `a` | if this rule matches, refuse the request (ERROR 2; the replacement, if any, is the message) |
//! | `G` / `P` | the rule applies to reads (GET) / writes (PUT) only |
//! | `4` / `6` | the rule applies to IPv4 / IPv6 clients only (IPv4-mapped clients are IPv4) |
//! | `~` | the rule applies when the regex does *not* match (not with `r`) |
//!
//! In the replacement: `\0` the whole match, `\1`..`\9` the groups, `\i` the client's address
//! (`192.0.2.169`, `2001:db8::1`), `\x` the address in upper-case hex (`C00002A9`, 32 digits
//! for IPv6, as pxelinux names its files), `\U` / `\L` upper- / lower-case what follows, `\E`
//! ends that, and `\` before any other character (`\\`, `\#`, `\ `) is that character.
//!
//! ```
//! use std::net::IpAddr;
//! use tftp_proto::RequestKind;
//! use tftpd::remap::RemapRules;
//!
//! let rules = RemapRules::parse(r"
//! ri  ^[a-z]:          # Remove drive letters
//! rg  \\       /       # Convert backslashes to slashes
//! r   ^pxelinux\.cfg/default$  pxelinux.cfg/\x
//! ").unwrap();
//! let ip: IpAddr = "192.0.2.169".parse().unwrap();
//! assert_eq!(rules.apply(r"C:\boot\kernel", RequestKind::Read, ip).unwrap(), "/boot/kernel");
//! assert_eq!(rules.apply("pxelinux.cfg/default", RequestKind::Read, ip).unwrap(), "pxelinux.cfg/C00002A9");
//! ```
//!
//! Names are matched as bytes, as tftpd-hpa's POSIX regexes match them in the C locale it runs
//! in: `.` is any byte but a newline, and `\w`, `\d`, `\s`, `[[:alpha:]]` and the `i` flag
//! know ASCII letters and digits only (a rewrite that leaves a name that is not UTF-8, by cutting
//! a character apart, refuses the request). Without Unicode classes the program carries none
//! of their tables: 246 KB of read-only data and 114 KB of pointers that the loader relocates,
//! which every tftpd process kept as its own memory.
//!
//! Differences from tftpd-hpa: the regex syntax is Rust's [`regex`] (egrep's usual forms —
//! `^ $ . [...] [^...] ( ) | * + ? {m,n}` and `[[:alpha:]]` classes — mean the same, but a
//! match is the leftmost-first, not POSIX's leftmost-longest, among alternatives); `s` starts
//! over from the first rule, as the manual says (tftpd-hpa itself resumes at the second); and
//! every loop is bounded: more than [`MAX_RESTARTS`] restarts, [`MAX_STEPS`] rule
//! applications, or a name growing past [`MAX_NAME_LEN`] bytes refuses the request.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use regex::bytes::{Captures, Regex, RegexBuilder};
use tftp_proto::{ErrorCode, RequestKind};
use tftp_server::request::Printable;
use tftp_server::{HandlerError, Request};
use tftp_tokio::{Handler, ReadResponse, WriteResponse};

use crate::log_limit::LogLimit;

/// Most `s` restarts while remapping one name; more refuse the request.
pub const MAX_RESTARTS: u32 = 16;

/// Most rule applications (each repetition of a `g` rule counts) for one name.
pub const MAX_STEPS: u32 = 1000;

/// Longest name a rewrite may produce, in bytes.
pub const MAX_NAME_LEN: usize = 4096;

/// Most bytes of a compiled rule's regex program.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    rewrite: bool,
    global: bool,
    exit: bool,
    restart: bool,
    abort: bool,
    get_only: bool,
    put_only: bool,
    ipv4_only: bool,
    ipv6_only: bool,
    inverse: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    flags: Flags,
    regex: Regex,
    replacement: String,
}

impl Rule {
    fn applies(&self, kind: RequestKind, ip: IpAddr) -> bool {
        let f = self.flags;
        !((f.get_only && kind != RequestKind::Read)
            || (f.put_only && kind != RequestKind::Write)
            || (f.ipv4_only && !ip.is_ipv4())
            || (f.ipv6_only && !ip.is_ipv6()))
    }
}

/// A rules file: the rules in order.
#[derive(Debug, Clone, Default)]
pub struct RemapRules {
    rules: Vec<Rule>,
}

/// A rules file that cannot be used: the line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An `a` rule matched; `message` is its replacement, expanded, if it has one.
    Aborted {
        /// The rule's line in the file.
        line: usize,
        /// The message for the client (tftpd-hpa's custom error message).
        message: Option<String>,
    },
    /// The rules did not come to an end within [`MAX_RESTARTS`] / [`MAX_STEPS`].
    Looped,
    /// A rewrite made the name longer than [`MAX_NAME_LEN`].
    TooLong,
    /// A rewrite left a name that is not UTF-8 (a rule matched part of a character).
    NotUtf8,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Aborted { line, .. } => write!(f, "refused by the rule on line {line}"),
            Refusal::Looped => f.write_str("the rules did not terminate"),
            Refusal::TooLong => f.write_str("a rewrite made the name too long"),
            Refusal::NotUtf8 => f.write_str("a rewrite cut a character of the name apart"),
        }
    }
}

/// Split a line into tftpd-hpa's fields: white space separates, an unescaped `#` ends the
/// line, and `\` escapes the next character (both are kept: the regex and the replacement
/// interpret them).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(char::is_ascii_whitespace).is_some() {}
        match chars.peek() {
            None | Some('#') => return out,
            Some(_) => {}
        }
        let mut field = String::new();
        let mut escaped = false;
        while let Some(&c) = chars.peek() {
            if !escaped && (c.is_ascii_whitespace() || c == '#') {
                break;
            }
            escaped = !escaped && c == '\\';
            field.push(c);
            chars.next();
        }
        out.push(field);
    }
}

impl RemapRules {
    /// Parse a rules file's text.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut rules = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let fail = |message: String| ParseError {
                line: line_no,
                message,
            };
            let mut fields = fields(line).into_iter();
            let Some(op) = fields.next() else { continue };
            let mut flags = Flags::default();
            let mut icase = false;
            for c in op.chars() {
                match c {
                    'r' => flags.rewrite = true,
                    'g' => flags.global = true,
                    'i' => icase = true,
                    'e' => flags.exit = true,
                    's' => flags.restart = true,
                    'a' => flags.abort = true,
                    'G' => flags.get_only = true,
                    'P' => flags.put_only = true,
                    '4' => flags.ipv4_only = true,
                    '6' => flags.ipv6_only = true,
                    '~' => flags.inverse = true,
                    other => {
                        return Err(fail(format!(
                            "operation `{op}` contains `{other}` (the letters are r g i e s a G P 4 6 ~)"
                        )));
                    }
                }
            }
            // As tftpd-hpa: `g` only means something with `r`.
            flags.global &= flags.rewrite;
            if flags.inverse && flags.rewrite {
                return Err(fail("an `r` rule cannot be inverted with `~`".into()));
            }
            let Some(pattern) = fields.next() else {
                return Err(fail(format!("operation `{op}` has no regex")));
            };
            // Bytes and ASCII, as tftpd-hpa's regcomp(3) in the C locale (see the module docs).
            let regex = RegexBuilder::new(&pattern)
                .unicode(false)
                .case_insensitive(icase)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| fail(format!("regex `{pattern}`: {e}")))?;
            let replacement = fields.next().unwrap_or_default();
            rules.push(Rule {
                line: line_no,
                flags,
                regex,
                replacement,
            });
        }
        Ok(RemapRules { rules })
    }

    /// Read and parse a rules file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (every name stays as it is).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The name `name` becomes for a `kind` request from `client`, or why it is refused.
    pub fn apply(&self, name: &str, kind: RequestKind, client: IpAddr) -> Result<String, Refusal> {
        let client = client.to_canonical();
        let mut current = name.as_bytes().to_vec();
        let mut restarts = 0;
        let mut steps = 0;
        let mut i = 0;
        while let Some(rule) = self.rules.get(i) {
            i += 1;
            if !rule.applies(kind, client) {
                continue;
            }
            let mut matched = false;
            loop {
                steps += 1;
                if steps > MAX_STEPS {
                    return Err(Refusal::Looped);
                }
                let captures = rule.regex.captures(&current);
                if captures.is_some() == rule.flags.inverse {
                    break;
                }
                matched = true;
                // An inverted rule matched nothing: its groups are empty.
                let captures = captures.filter(|_| !rule.flags.inverse);
                if rule.flags.abort {
                    let message = (!rule.replacement.is_empty()).then(|| {
                        let message =
                            substitute(&rule.replacement, &current, captures.as_ref(), client);
                        String::from_utf8_lossy(&message).into_owned()
                    });
                    return Err(Refusal::Aborted {
                        line: rule.line,
                        message,
                    });
                }
                if rule.flags.rewrite {
                    current = substitute(&rule.replacement, &current, captures.as_ref(), client);
                    if current.len() > MAX_NAME_LEN {
                        return Err(Refusal::TooLong);
                    }
                }
                if !rule.flags.global {
                    break;
                }
            }
            if matched {
                if rule.flags.exit {
                    break;
                }
                if rule.flags.restart {
                    restarts += 1;
                    if restarts > MAX_RESTARTS {
                        return Err(Refusal::Looped);
                    }
                    i = 0;
                }
            }
        }
        String::from_utf8(current).map_err(|_| Refusal::NotUtf8)
    }
}

#[derive(Clone, Copy)]
enum Case {
    Keep,
    Upper,
    Lower,
}

impl Case {
    fn push(self, out: &mut Vec<u8>, s: &[u8]) {
        match self {
            Case::Keep => out.extend_from_slice(s),
            Case::Upper => out.extend(s.iter().map(u8::to_ascii_uppercase)),
            Case::Lower => out.extend(s.iter().map(u8::to_ascii_lowercase)),
        }
    }
}

/// tftpd-hpa's `genmatchstring`: the part of `input` before the match, `replacement` expanded,
/// and the part after the match. Without a match (an inverted rule's message): the expansion
/// alone.
fn substitute(
    replacement: &str,
    input: &[u8],
    captures: Option<&Captures<'_>>,
    client: IpAddr,
) -> Vec<u8> {
    let whole = captures.and_then(|c| c.get(0));
    let mut out = Vec::with_capacity(input.len() + replacement.len());
    if let Some(m) = whole {
        out.extend_from_slice(&input[..m.start()]);
    }
    let mut case = Case::Keep;
    let mut chars = replacement.chars();
    let mut buf = [0u8; 4];
    while let Some(c) = chars.next() {
        if c != '\\' {
            case.push(&mut out, c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some(e) = chars.next() else {
            // A trailing backslash is itself.
            case.push(&mut out, b"\\");
            break;
        };
        match e {
            '0'..='9' => {
                let n = e as usize - '0' as usize;
                if let Some(m) = captures.and_then(|c| c.get(n)) {
                    case.push(&mut out, m.as_bytes());
                }
            }
            'U' => case = Case::Upper,
            'L' => case = Case::Lower,
            'E' => case = Case::Keep,
            'i' => case.push(&mut out, client.to_string().as_bytes()),
            'x' => case.push(&mut out, hex_address(client).as_bytes()),
            other => case.push(&mut out, other.encode_utf8(&mut buf).as_bytes()),
        }
    }
    if let Some(m) = whole {
        out.extend_from_slice(&input[m.end()..]);
    }
    out
}

/// The address in upper-case hex: 8 digits for IPv4, 32 for IPv6.
pub fn hex_address(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("{:08X}", u32::from(v4)),
        IpAddr::V6(v6) => format!("{:032X}", u128::from(v6)),
    }
}

/// Remapped names waiting for their session's report, so that the session log can show
/// them (`"remapped"`): filled by [`Remap`], emptied by
/// [`SessionLog::with_remaps`](crate::session_log::SessionLog::with_remaps). Keyed by the
/// client's address and port and the name it sent; bounded (cleared when full).
#[derive(Debug, Clone, Default)]
pub struct RemapNotes(Arc<Mutex<HashMap<(SocketAddr, String), String>>>);

impl RemapNotes {
    /// Most names kept waiting for a report.
    const MAX: usize = 4096;

    fn note(&self, peer: SocketAddr, original: &str, remapped: &str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert((peer, original.to_owned()), remapped.to_owned());
    }

    /// The name the request from `peer` for `original` was remapped to, if it was.
    pub fn take(&self, peer: SocketAddr, original: &str) -> Option<String> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&(peer, original.to_owned()))
    }
}

/// A handler that remaps each request's file name with [`RemapRules`] before `inner` sees
/// it, or refuses it (ERROR 2, "Access violation" or the `a` rule's message).
///
/// Each remap and each refusal is logged at info level (at most 20 lines a second, then a
/// count of those left out). The session report keeps the name the client sent; give the same
/// [`RemapNotes`] to the session log to record the new name too.
#[derive(Debug, Clone)]
pub struct Remap<H> {
    rules: Arc<RemapRules>,
    inner: H,
    notes: Option<RemapNotes>,
    log: Arc<LogLimit>,
}

impl<H> Remap<H> {
    /// `inner` behind `rules`.
    pub fn new(rules: RemapRules, inner: H) -> Self {
        Remap {
            rules: Arc::new(rules),
            inner,
            notes: None,
            log: Arc::new(LogLimit::new(20)),
        }
    }

    /// Record remapped names in `notes` (for the session log).
    pub fn with_notes(mut self, notes: RemapNotes) -> Self {
        self.notes = Some(notes);
        self
    }

    /// The request `inner` sees, or the refusal.
    fn map<'r>(&self, request: &'r Request) -> Result<Cow<'r, Request>, HandlerError> {
        if self.rules.is_empty() {
            return Ok(Cow::Borrowed(request));
        }
        let original = request.filename.as_str();
        match self.rules.apply(original, request.kind, request.peer.ip()) {
            Ok(name) if name == original => Ok(Cow::Borrowed(request)),
            Ok(name) => {
                if let Some(suppressed) = self.log.allow() {
                    tracing::info!(
                        peer = %request.peer,
                        file = %Printable(original),
                        remapped = %Printable(&name),
                        suppressed,
                        "remapped"
                    );
                }
                if let Some(notes) = &self.notes {
                    notes.note(request.peer, original, &name);
                }
                let mut mapped = request.clone();
                mapped.filename = name;
                Ok(Cow::Owned(mapped))
            }
            Err(refusal) => {
                if let Some(suppressed) = self.log.allow() {
                    tracing::info!(
                        peer = %request.peer,
                        file = %Printable(original),
                        reason = %refusal,
                        suppressed,
                        "refused by the remap rules"
                    );
                }
                Err(match refusal {
                    Refusal::Aborted {
                        message: Some(message),
                        ..
                    } => HandlerError::new(ErrorCode::ACCESS_VIOLATION, clip(message)),
                    _ => HandlerError::access_violation(),
                })
            }
        }
    }
}

/// An `a` rule's message cut to what fits an ERROR packet comfortably.
fn clip(mut message: String) -> String {
    const MAX: usize = 255;
    if message.len() > MAX {
        let mut end = MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

impl<H: Handler> Handler for Remap<H> {
    async fn read(&self, request: &Request) -> Result<ReadResponse, HandlerError> {
        let request = self.map(request)?;
        self.inner.read(&request).await
    }

    async fn write(&self, request: &Request) -> Result<WriteResponse, HandlerError> {
        let request = self.map(request)?;
        self.inner.write(&request).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SAMPLE: &str = include_str!("../tests/remap/sample.rules");

    fn v4() -> IpAddr {
        "192.0.2.169".parse().unwrap()
    }

    fn get(rules: &RemapRules, name: &str) -> Result<String, Refusal> {
        rules.apply(name, RequestKind::Read, v4())
    }

    #[test]
    fn the_sample_rules_of_tftpd_hpa() {
        let rules = RemapRules::parse(SAMPLE).unwrap();
        assert_eq!(rules.len(), 7);
        assert_eq!(get(&rules, "vmlinuz").unwrap(), "/tftpboot/vmlinuz");
        assert_eq!(get(&rules, r"C:\boot\x").unwrap(), "/boot/x");
        assert_eq!(get(&rules, "a#b").unwrap(), "/tftpboot/a@b");
        assert_eq!(get(&rules, "x/../y").unwrap(), "/tftpboot/x/..no../y");
        assert_eq!(get(&rules, "ok/anything").unwrap(), "ok/anything");
        assert_eq!(get(&rules, "/abs").unwrap(), "/abs");
        assert_eq!(
            get(&rules, "keys.pvt"),
            Err(Refusal::Aborted {
                line: 33,
                message: None
            })
        );
    }

    #[test]
    fn escapes_in_the_replacement() {
        let rules = RemapRules::parse(
            "r ^pxe/(.*)$ \\i/\\x/\\1/\\\\/\\#/\\ /\\Uup\\1\\E/\\Llow\\0\nr ^$ empty",
        )
        .unwrap();
        assert_eq!(
            get(&rules, "pxe/aB").unwrap(),
            "192.0.2.169/C00002A9/aB/\\/#/ /UPAB/lowpxe/ab"
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            rules.apply("pxe/a", RequestKind::Read, v6).unwrap(),
            "2001:db8::1/20010DB8000000000000000000000001/a/\\/#/ /UPA/lowpxe/a"
        );
        let mapped: IpAddr = "::ffff:192.0.2.169".parse().unwrap();
        assert!(
            rules
                .apply("pxe/a", RequestKind::Read, mapped)
                .unwrap()
                .starts_with("192.0.2.169/C00002A9/")
        );
        assert_eq!(get(&rules, "").unwrap(), "empty");
    }

    #[test]
    fn operations() {
        let rules = RemapRules::parse(
            "rG ^get$ got\nrP ^put$ putted\nr4 ^v4$ four\nr6 ^v6$ six\n~a ^(ok|got|put|putted|four|v6|loop.*|Case|x+)$ nope\\ \\0\n\
             ri ^case$ Case\nrs ^loop$ loop2\nrs ^loop2$ loop\n",
        )
        .unwrap();
        assert_eq!(get(&rules, "get").unwrap(), "got");
        assert_eq!(
            rules.apply("put", RequestKind::Write, v4()).unwrap(),
            "putted"
        );
        assert_eq!(
            rules.apply("get", RequestKind::Write, v4()).unwrap_err(),
            Refusal::Aborted {
                line: 5,
                message: Some("nope ".into())
            }
        );
        assert_eq!(get(&rules, "v4").unwrap(), "four");
        assert_eq!(get(&rules, "v6").unwrap(), "v6");
        assert_eq!(
            get(&rules, "CASE").unwrap_err(),
            Refusal::Aborted {
                line: 5,
                message: Some("nope ".into())
            }
        );
        assert_eq!(get(&rules, "loop"), Err(Refusal::Looped));
        let ci = RemapRules::parse("ri ^case$ Case\ne ^Case$\nr .* never").unwrap();
        assert_eq!(get(&ci, "CaSe").unwrap(), "Case");
        let global = RemapRules::parse("rg a b\nrg x* y").unwrap();
        assert_eq!(get(&global, "banana").unwrap_err(), Refusal::Looped);
        let grow = RemapRules::parse("rg a aaaaaaaaaa").unwrap();
        assert_eq!(get(&grow, "a").unwrap_err(), Refusal::TooLong);
        let abort = RemapRules::parse("a ^secret/(.*) no\\ access\\ to\\ \\1").unwrap();
        assert_eq!(
            get(&abort, "secret/x").unwrap_err(),
            Refusal::Aborted {
                line: 1,
                message: Some("no access to x".into())
            }
        );
    }

    #[test]
    fn names_are_matched_as_bytes_with_ascii_classes() {
        // As tftpd-hpa's regcomp(3) in the C locale: `\w` and `i` know ASCII only, `.` is a
        // byte.
        let words = RemapRules::parse("ri ^\\w+$ word\\ \\0").unwrap();
        assert_eq!(get(&words, "KERNEL_1").unwrap(), "word KERNEL_1");
        assert_eq!(get(&words, "\u{e9}t\u{e9}").unwrap(), "\u{e9}t\u{e9}");
        let dot = RemapRules::parse("r ^caf.$ one\\ byte").unwrap();
        assert_eq!(get(&dot, "cafe").unwrap(), "one byte");
        // `é` is two bytes: `caf.$` does not match "café".
        assert_eq!(get(&dot, "caf\u{e9}").unwrap(), "caf\u{e9}");
        let ci = RemapRules::parse("ri ^\u{e9}t\u{e9}$ summer").unwrap();
        assert_eq!(get(&ci, "\u{e9}t\u{e9}").unwrap(), "summer");
        assert_eq!(get(&ci, "\u{c9}t\u{c9}").unwrap(), "\u{c9}t\u{c9}");
    }

    #[test]
    fn a_rewrite_that_cuts_a_character_apart_is_refused() {
        // The first byte of `é` replaced: what is left is not UTF-8. tftpd-hpa would pass the
        // bytes on; a name here is a string, so the request is refused instead.
        let rules = RemapRules::parse("r ^. x").unwrap();
        assert_eq!(get(&rules, "\u{e9}t\u{e9}"), Err(Refusal::NotUtf8));
        assert_eq!(get(&rules, "abc").unwrap(), "xbc");
        // An `a` rule's message is the client's error text: what is not UTF-8 is replaced.
        let abort = RemapRules::parse("a ^. x").unwrap();
        assert_eq!(
            get(&abort, "\u{e9}"),
            Err(Refusal::Aborted {
                line: 1,
                message: Some("x\u{fffd}".into())
            })
        );
    }

    /// The sample rules, and rules that cut characters apart (`^(.)…(.)$`, `.$`), change case
    /// byte by byte and grow the name: parsed once for every case of the proptest below.
    static HOSTILE_RULES: std::sync::LazyLock<RemapRules> = std::sync::LazyLock::new(|| {
        RemapRules::parse(&format!(
            "{SAMPLE}\nri ^(.)(.*)(.)$ \\3\\U\\2\\E\\1\nrgi \u{e9} \\L\\0\u{c9}\nr .$ \\x\\i"
        ))
        .unwrap()
    });

    proptest::proptest! {
        /// Whatever name a client sends, the rules give a name or a refusal: never a panic,
        /// never a name longer than the bound.
        #[test]
        fn any_name_is_remapped_or_refused(name in "[a-zA-Z0-9./\\\\#_\u{e9}\u{c9}\u{2603}\u{1f980}]{0,40}") {
            match HOSTILE_RULES.apply(&name, RequestKind::Read, v4()) {
                Ok(mapped) => proptest::prop_assert!(mapped.len() <= MAX_NAME_LEN),
                Err(Refusal::Aborted { .. } | Refusal::Looped | Refusal::TooLong | Refusal::NotUtf8) => {}
            }
        }
    }

    #[test]
    fn bad_rules_name_their_line() {
        for (text, line) in [
            ("r", 1),
            ("# c\n\nx a b", 3),
            ("r (unclosed x", 1),
            ("~r a b", 1),
        ] {
            assert_eq!(RemapRules::parse(text).unwrap_err().line, line, "{text}");
        }
        assert!(
            RemapRules::parse("  # only a comment\n\n")
                .unwrap()
                .is_empty()
        );
    }
}
