//! Scenarios for the directory back-end: no byte outside the root is ever served or written,
//! whatever the requested name, and uploads appear whole or not at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::Duration;

use tempfile::TempDir;
use tftp_proto::ErrorCode;
use tftp_server::fs::{FsError, MAX_COMPONENTS, MAX_NAME_LEN, Root, RootOptions, Upload};

const SECRET: &[u8] = b"OUTSIDE THE ROOT: must never be served";

/// `<tmp>/root` is served; `<tmp>/secret` and `<tmp>/outside/secret` are not.
struct Fixture {
    tmp: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        fs::create_dir(base.join("outside")).unwrap();
        fs::write(base.join("outside/secret"), SECRET).unwrap();
        fs::write(base.join("secret"), SECRET).unwrap();
        fs::create_dir(base.join("root")).unwrap();
        fs::write(base.join("root/hello.txt"), b"hello").unwrap();
        fs::write(base.join("root/x"), b"x inside").unwrap();
        fs::create_dir(base.join("root/a")).unwrap();
        fs::create_dir(base.join("root/sub")).unwrap();
        fs::write(base.join("root/sub/inner.txt"), b"inner").unwrap();
        Fixture { tmp }
    }

    fn base(&self) -> &Path {
        self.tmp.path()
    }

    fn root_path(&self) -> PathBuf {
        self.base().join("root")
    }

    fn root(&self, options: RootOptions) -> Root {
        Root::open(self.root_path(), options).unwrap()
    }

    fn writable(&self) -> Root {
        self.root(RootOptions {
            allow_write: true,
            ..RootOptions::default()
        })
    }

    fn assert_outside_untouched(&self) {
        assert_eq!(fs::read(self.base().join("secret")).unwrap(), SECRET);
        assert_eq!(
            fs::read(self.base().join("outside/secret")).unwrap(),
            SECRET
        );
        assert_eq!(names(&self.base().join("outside")), set(&["secret"]));
        assert_eq!(names(self.base()), set(&["outside", "root", "secret"]));
    }
}

fn read(root: &Root, name: &str) -> Result<Vec<u8>, FsError> {
    let (mut file, size) = root.open_read(name)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).unwrap();
    assert_eq!(data.len() as u64, size, "reported size of {name:?}");
    Ok(data)
}

fn code<T>(result: Result<T, FsError>) -> ErrorCode {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.code,
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn upload(root: &Root, name: &str, data: &[u8]) -> Result<(), FsError> {
    let mut up = root.create_upload(name, Some(data.len() as u64))?;
    up.file()
        .write_all(data)
        .map_err(FsError::from_write_error)?;
    up.check_size(data.len() as u64)?;
    up.commit()
}

const FIXED_MESSAGES: [&str; 5] = [
    "File not found",
    "Access violation",
    "Disk full or allocation exceeded",
    "File already exists",
    "I/O error",
];

#[test]
fn traversal_corpus_never_serves_outside() {
    let f = Fixture::new();
    let root = f.root(RootOptions {
        follow_hardlinks: true,
        case_insensitive: true,
        ..RootOptions::default()
    });
    let overlong = "a".repeat(MAX_NAME_LEN + 1);
    let too_deep = ["a"; MAX_COMPONENTS + 1].join("/");
    let av = ErrorCode::ACCESS_VIOLATION;
    let nf = ErrorCode::FILE_NOT_FOUND;
    let corpus: Vec<(&str, ErrorCode)> = vec![
        // `..` in every position, with either separator.
        ("..", av),
        ("../secret", av),
        ("../outside/secret", av),
        ("a/../../secret", av),
        ("a/..", av),
        ("a/../x", av), // would stay inside: still refused
        ("..\\secret", av),
        ("a\\..\\..\\secret", av),
        ("a\\..\\x", av),
        ("/../secret", av),
        ("\\..\\secret", av),
        ("./../secret", av),
        ("a/./../../secret", av),
        ("sub/inner.txt/..", av),
        ("a/b/c/d/../../../../../secret", av),
        // Absolute names are relative to the root.
        ("/etc/passwd", nf),
        ("\\etc\\passwd", nf),
        ("//etc//passwd", nf),
        ("/secret", nf),
        // Percent-encoding is a literal name, never decoded.
        ("%2e%2e/secret", nf),
        ("%2e%2e%2fsecret", nf),
        ("..%2fsecret", nf),
        ("%2E%2E%5Csecret", nf),
        // Dots that are not `..`.
        ("...", nf),
        (".../secret", nf),
        ("....//secret", nf),
        // Empty and odd names.
        ("", nf),
        ("/", nf),
        ("\\\\", nf),
        (".", nf),
        ("a\0b", av),
        (&overlong, av),
        (&too_deep, av),
    ];
    for (name, expected) in &corpus {
        match read(&root, name) {
            Ok(data) => panic!("{name:?} was served: {data:?}"),
            Err(e) => {
                assert_eq!(e.code, *expected, "{name:?}");
                assert!(
                    FIXED_MESSAGES.contains(&e.message),
                    "{name:?}: {}",
                    e.message
                );
                let shown = e.to_string();
                assert!(
                    FIXED_MESSAGES.contains(&shown.as_str()),
                    "{name:?}: {shown}"
                );
                assert!(!shown.contains("secret") && !shown.contains("passwd"));
            }
        }
    }
    // The same corpus as upload names writes nothing anywhere.
    let writable = Root::open(
        f.root_path(),
        RootOptions {
            allow_write: true,
            allow_overwrite: true,
            ..RootOptions::default()
        },
    )
    .unwrap();
    for (name, expected) in &corpus {
        let result = writable.create_upload(name, None);
        if *expected == av {
            assert_eq!(code(result), av, "upload {name:?}");
        } else {
            // Either refused, or a literal name inside the root: drop it uncommitted.
            drop(result);
        }
    }
    f.assert_outside_untouched();
    assert_eq!(names(&f.root_path()), set(&["a", "hello.txt", "sub", "x"]));
}

#[test]
fn leading_slashes_backslashes_and_dots_resolve_inside_the_root() {
    let f = Fixture::new();
    let root = f.root(RootOptions::default());
    for name in [
        "hello.txt",
        "/hello.txt",
        "//hello.txt",
        "\\hello.txt",
        "./hello.txt",
        "/./hello.txt",
    ] {
        assert_eq!(read(&root, name).unwrap(), b"hello", "{name:?}");
    }
    for name in [
        "sub/inner.txt",
        "sub//inner.txt",
        "sub\\inner.txt",
        "/sub/./inner.txt",
        "\\sub\\inner.txt",
    ] {
        assert_eq!(read(&root, name).unwrap(), b"inner", "{name:?}");
    }
    // `/etc/passwd` means `<root>/etc/passwd`.
    fs::create_dir(f.root_path().join("etc")).unwrap();
    fs::write(f.root_path().join("etc/passwd"), b"root's own").unwrap();
    assert_eq!(read(&root, "/etc/passwd").unwrap(), b"root's own");
    // A percent-encoded name is a literal file name.
    fs::write(f.root_path().join("%2e%2e"), b"literal").unwrap();
    assert_eq!(read(&root, "%2e%2e").unwrap(), b"literal");
}

#[test]
fn symlinks_inside_are_followed_and_outside_refused() {
    let f = Fixture::new();
    let r = f.root_path();
    symlink("hello.txt", r.join("in_link")).unwrap();
    symlink("../hello.txt", r.join("sub/up_link")).unwrap();
    symlink("sub", r.join("dir_link")).unwrap();
    symlink("sub/up_link", r.join("chain")).unwrap();
    symlink(f.base().join("outside/secret"), r.join("abs_out")).unwrap();
    symlink("../outside/secret", r.join("rel_out")).unwrap();
    symlink("../../secret", r.join("sub/rel_out2")).unwrap();
    symlink("a/../../secret", r.join("dotdot_out")).unwrap();
    symlink(r.join("hello.txt"), r.join("abs_in")).unwrap();
    symlink("../outside", r.join("dir_out")).unwrap();
    symlink(f.base().join("outside"), r.join("abs_dir_out")).unwrap();
    symlink("/dev/null", r.join("devnull")).unwrap();
    symlink("../../../../../../../../../dev/null", r.join("rel_devnull")).unwrap();
    symlink("loop", r.join("loop")).unwrap();

    let root = f.root(RootOptions::default());
    assert_eq!(read(&root, "in_link").unwrap(), b"hello");
    assert_eq!(read(&root, "sub/up_link").unwrap(), b"hello");
    assert_eq!(read(&root, "dir_link/inner.txt").unwrap(), b"inner");
    assert_eq!(read(&root, "chain").unwrap(), b"hello");
    for name in [
        "abs_out",
        "rel_out",
        "sub/rel_out2",
        "dotdot_out",
        // An absolute target is outside the Dir handle's view even when it names the root.
        "abs_in",
        "dir_out/secret",
        "abs_dir_out/secret",
        "devnull",
        "rel_devnull",
        "loop",
    ] {
        assert_eq!(
            code(read(&root, name)),
            ErrorCode::ACCESS_VIOLATION,
            "{name:?}"
        );
    }
    // A dangling link inside is simply not found.
    symlink("nowhere", r.join("dangling")).unwrap();
    assert_eq!(code(read(&root, "dangling")), ErrorCode::FILE_NOT_FOUND);
}

#[test]
fn hard_link_to_a_file_outside_is_refused_unless_configured() {
    let f = Fixture::new();
    fs::hard_link(f.base().join("outside/secret"), f.root_path().join("hl")).unwrap();
    let strict = f.root(RootOptions::default());
    assert_eq!(code(read(&strict, "hl")), ErrorCode::ACCESS_VIOLATION);
    // Through a symlink too: the check is on the opened file.
    symlink("hl", f.root_path().join("to_hl")).unwrap();
    assert_eq!(code(read(&strict, "to_hl")), ErrorCode::ACCESS_VIOLATION);
    let lenient = f.root(RootOptions {
        follow_hardlinks: true,
        ..RootOptions::default()
    });
    assert_eq!(read(&lenient, "hl").unwrap(), SECRET);
}

#[test]
fn directories_are_refused() {
    let f = Fixture::new();
    let root = f.root(RootOptions::default());
    for name in ["sub", "sub/", "/sub/.", "a"] {
        let e = root.open_read(name).unwrap_err();
        assert_eq!(e.code, ErrorCode::ACCESS_VIOLATION, "{name:?}");
        assert_eq!(e.message, "Access violation");
    }
}

/// Runs `f` on another thread and fails the test if it takes more than 5 s.
fn within_timeout<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the operation blocked")
}

#[test]
fn fifo_is_refused_without_blocking() {
    let f = Fixture::new();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        f.root_path().join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    symlink("fifo", f.root_path().join("fifo_link")).unwrap();
    let root = Arc::new(f.root(RootOptions::default()));
    for name in ["fifo", "fifo_link"] {
        let root = Arc::clone(&root);
        let result = within_timeout(move || root.open_read(name).map(|_| ()));
        assert_eq!(code(result), ErrorCode::ACCESS_VIOLATION, "{name:?}");
    }
    // Nor does an upload onto it open it.
    let writable = Arc::new(
        Root::open(
            f.root_path(),
            RootOptions {
                allow_write: true,
                allow_overwrite: true,
                ..RootOptions::default()
            },
        )
        .unwrap(),
    );
    let result = within_timeout(move || writable.create_upload("fifo", None).map(|_| ()));
    assert_eq!(code(result), ErrorCode::ACCESS_VIOLATION);
}

#[test]
fn socket_is_refused() {
    let f = Fixture::new();
    let _listener = std::os::unix::net::UnixListener::bind(f.root_path().join("sock")).unwrap();
    let root = f.root(RootOptions::default());
    assert_eq!(code(read(&root, "sock")), ErrorCode::ACCESS_VIOLATION);
}

#[test]
fn device_node_is_refused() {
    let f = Fixture::new();
    // /dev/null's numbers; needs CAP_MKNOD, so skipped where it is not granted.
    let made = rustix::fs::mknodat(
        rustix::fs::CWD,
        f.root_path().join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    );
    if made.is_err() {
        eprintln!("skipped: cannot create a device node here ({made:?})");
        return;
    }
    let root = f.root(RootOptions::default());
    assert_eq!(code(read(&root, "null")), ErrorCode::ACCESS_VIOLATION);
}

#[test]
fn permission_denied_is_an_access_violation() {
    let f = Fixture::new();
    let path = f.root_path().join("private");
    fs::write(&path, b"private").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::File::open(&path).is_ok() {
        eprintln!("skipped: running with privileges that bypass file permissions");
        return;
    }
    let root = f.root(RootOptions::default());
    assert_eq!(code(read(&root, "private")), ErrorCode::ACCESS_VIOLATION);
}

#[test]
fn case_insensitive_lookup() {
    let f = Fixture::new();
    let r = f.root_path();
    fs::create_dir(r.join("Boot")).unwrap();
    fs::write(r.join("Boot/PXELinux.0"), b"pxe").unwrap();
    fs::write(r.join("Readme"), b"Readme").unwrap();
    fs::write(r.join("README"), b"README").unwrap();
    symlink("../outside/secret", r.join("LINK")).unwrap();
    symlink("Boot", r.join("BootLink")).unwrap();

    let exact = f.root(RootOptions::default());
    assert_eq!(
        code(read(&exact, "boot/pxelinux.0")),
        ErrorCode::FILE_NOT_FOUND
    );

    let root = f.root(RootOptions {
        case_insensitive: true,
        ..RootOptions::default()
    });
    assert_eq!(read(&root, "boot/pxelinux.0").unwrap(), b"pxe");
    assert_eq!(read(&root, "\\BOOT\\PXELINUX.0").unwrap(), b"pxe");
    assert_eq!(read(&root, "bootlink/pxelinux.0").unwrap(), b"pxe");
    // An exact match wins; among several others, the smallest name in byte order.
    assert_eq!(read(&root, "Readme").unwrap(), b"Readme");
    assert_eq!(read(&root, "README").unwrap(), b"README");
    assert_eq!(read(&root, "readme").unwrap(), b"README");
    assert_eq!(read(&root, "rEADME").unwrap(), b"README");
    // No confinement is lost.
    assert_eq!(code(read(&root, "link")), ErrorCode::ACCESS_VIOLATION);
    assert_eq!(
        code(read(&root, "BOOT/../secret")),
        ErrorCode::ACCESS_VIOLATION
    );
    assert_eq!(code(read(&root, "boot/missing")), ErrorCode::FILE_NOT_FOUND);
    assert_eq!(code(read(&root, "SUB")), ErrorCode::ACCESS_VIOLATION);

    // Uploads resolve the same way: `HELLO.TXT` is the existing `hello.txt`.
    let writable = f.root(RootOptions {
        case_insensitive: true,
        allow_write: true,
        ..RootOptions::default()
    });
    assert_eq!(
        code(upload(&writable, "HELLO.TXT", b"x")),
        ErrorCode::FILE_EXISTS
    );
    upload(&writable, "BOOT/new.cfg", b"cfg").unwrap();
    assert_eq!(fs::read(r.join("Boot/new.cfg")).unwrap(), b"cfg");
}

#[test]
fn size_is_that_of_the_opened_file() {
    let f = Fixture::new();
    fs::write(f.root_path().join("big"), vec![7u8; 100_000]).unwrap();
    let root = f.root(RootOptions::default());
    let (_file, size) = root.open_read("big").unwrap();
    assert_eq!(size, 100_000);
}

#[test]
fn root_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Root>();
    assert_send_sync::<FsError>();
    fn assert_send<T: Send>() {}
    assert_send::<Upload>();
    let options = RootOptions::default();
    assert!(!options.case_insensitive && !options.allow_write && !options.allow_overwrite);
    assert!(options.max_upload_size.is_none() && !options.follow_hardlinks);
}

#[test]
fn upload_is_refused_when_writes_are_disabled() {
    let f = Fixture::new();
    let root = f.root(RootOptions::default());
    for name in ["new.txt", "hello.txt", "sub/new.txt"] {
        assert_eq!(
            code(root.create_upload(name, None)),
            ErrorCode::ACCESS_VIOLATION
        );
    }
    assert_eq!(names(&f.root_path()), set(&["a", "hello.txt", "sub", "x"]));
}

#[test]
fn upload_success() {
    let f = Fixture::new();
    let root = f.writable();
    let data: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    let mut up = root.create_upload("/new.bin", None).unwrap();
    // Adapters may write through their own handle.
    let mut clone = up.file().try_clone().unwrap();
    clone.write_all(&data[..1000]).unwrap();
    up.file().write_all(&data[1000..]).unwrap();
    // Nothing under the final name before the commit.
    assert!(!f.root_path().join("new.bin").exists());
    up.commit().unwrap();
    assert_eq!(fs::read(f.root_path().join("new.bin")).unwrap(), data);
    let mode = fs::metadata(f.root_path().join("new.bin")).unwrap().mode();
    assert_eq!(
        mode & 0o133,
        0,
        "mode {mode:o}: not executable, not group/other-writable"
    );
    assert_eq!(read(&root, "new.bin").unwrap(), data);

    upload(&root, "sub\\win.txt", b"windows").unwrap();
    assert_eq!(
        fs::read(f.root_path().join("sub/win.txt")).unwrap(),
        b"windows"
    );
    upload(&root, "%2e%2e", b"literal").unwrap();
    assert_eq!(fs::read(f.root_path().join("%2e%2e")).unwrap(), b"literal");
    // A name as long as NAME_MAX still gets a temporary name that fits.
    let long = "n".repeat(255);
    upload(&root, &long, b"long").unwrap();
    assert_eq!(fs::read(f.root_path().join(&long)).unwrap(), b"long");
    // No temporary files left behind.
    assert_eq!(
        names(&f.root_path()),
        set(&["%2e%2e", "a", "hello.txt", "new.bin", "sub", "x", &long])
    );
    assert_eq!(
        names(&f.root_path().join("sub")),
        set(&["inner.txt", "win.txt"])
    );
    f.assert_outside_untouched();
}

#[test]
fn upload_needs_an_existing_parent_directory() {
    let f = Fixture::new();
    let root = f.writable();
    assert_eq!(
        code(root.create_upload("nodir/new.txt", None)),
        ErrorCode::FILE_NOT_FOUND
    );
    assert_eq!(
        code(root.create_upload("hello.txt/new.txt", None)),
        ErrorCode::FILE_NOT_FOUND
    );
    assert_eq!(
        code(root.create_upload("", None)),
        ErrorCode::FILE_NOT_FOUND
    );
    assert_eq!(
        code(root.create_upload("/", None)),
        ErrorCode::FILE_NOT_FOUND
    );
    assert!(!f.root_path().join("nodir").exists());
}

#[test]
fn upload_to_an_existing_name() {
    let f = Fixture::new();
    let strict = f.writable();
    // Refused up front without allow_overwrite.
    let e = strict.create_upload("hello.txt", None).unwrap_err();
    assert_eq!(e.code, ErrorCode::FILE_EXISTS);
    assert_eq!(e.message, "File already exists");
    assert_eq!(fs::read(f.root_path().join("hello.txt")).unwrap(), b"hello");

    let lenient = f.root(RootOptions {
        allow_write: true,
        allow_overwrite: true,
        ..RootOptions::default()
    });
    upload(&lenient, "hello.txt", b"replaced").unwrap();
    assert_eq!(
        fs::read(f.root_path().join("hello.txt")).unwrap(),
        b"replaced"
    );
    assert_eq!(names(&f.root_path()), set(&["a", "hello.txt", "sub", "x"]));
}

/// Onto a directory, or a symlink to one: inside the root or out of it (with
/// `allow_overwrite`, the rename would replace the link to an outside directory, which the
/// administrator put there, by a regular file).
#[test]
fn upload_onto_a_directory_is_refused() {
    let f = Fixture::new();
    let r = f.root_path();
    symlink("sub", r.join("sub_link")).unwrap();
    symlink("../outside", r.join("dir_out")).unwrap();
    symlink(f.base().join("outside"), r.join("abs_dir_out")).unwrap();
    symlink("/", r.join("slash")).unwrap();
    for overwrite in [false, true] {
        for case_insensitive in [false, true] {
            let root = f.root(RootOptions {
                allow_write: true,
                allow_overwrite: overwrite,
                case_insensitive,
                ..RootOptions::default()
            });
            let mut names = vec!["sub", "/sub/", "a", "sub_link", "dir_out", "abs_dir_out"];
            names.push("slash");
            if case_insensitive {
                names.extend(["SUB", "Dir_Out", "ABS_DIR_OUT"]);
            }
            for name in names {
                assert_eq!(
                    code(upload(&root, name, b"evil")),
                    ErrorCode::ACCESS_VIOLATION,
                    "{name:?}, overwrite: {overwrite}"
                );
            }
        }
    }
    assert_eq!(names(&r.join("sub")), set(&["inner.txt"]));
    for link in ["sub_link", "dir_out", "abs_dir_out", "slash"] {
        assert!(
            fs::symlink_metadata(r.join(link)).unwrap().is_symlink(),
            "{link}"
        );
    }
    f.assert_outside_untouched();
}

#[test]
fn upload_through_a_parent_leading_outside_is_refused() {
    let f = Fixture::new();
    symlink("../outside", f.root_path().join("dir_out")).unwrap();
    symlink(f.base().join("outside"), f.root_path().join("abs_dir_out")).unwrap();
    symlink("../..", f.root_path().join("sub/up2")).unwrap();
    let root = f.root(RootOptions {
        allow_write: true,
        allow_overwrite: true,
        ..RootOptions::default()
    });
    for name in [
        "dir_out/new",
        "dir_out/secret",
        "abs_dir_out/new",
        "sub/up2/new",
        "sub/up2/outside/secret",
    ] {
        assert_eq!(
            code(upload(&root, name, b"evil")),
            ErrorCode::ACCESS_VIOLATION,
            "{name:?}"
        );
    }
    f.assert_outside_untouched();
}

/// A symlink to a file inside the root is an existing file: refused without
/// `allow_overwrite`, and with it the link itself is replaced (rename does not follow it), not
/// its target.
#[test]
fn upload_over_a_symlink_inside_replaces_the_link_not_its_target() {
    let f = Fixture::new();
    let r = f.root_path();
    symlink("hello.txt", r.join("in_link")).unwrap();
    symlink("nowhere", r.join("dangling")).unwrap();
    let strict = f.writable();
    for name in ["in_link", "dangling"] {
        assert_eq!(code(upload(&strict, name, b"new")), ErrorCode::FILE_EXISTS);
    }
    let lenient = f.root(RootOptions {
        allow_write: true,
        allow_overwrite: true,
        ..RootOptions::default()
    });
    for name in ["in_link", "dangling"] {
        upload(&lenient, name, b"new content").unwrap();
        let meta = fs::symlink_metadata(r.join(name)).unwrap();
        assert!(meta.is_file(), "{name}");
        assert_eq!(fs::read(r.join(name)).unwrap(), b"new content");
    }
    assert_eq!(fs::read(r.join("hello.txt")).unwrap(), b"hello");
    assert!(!r.join("nowhere").exists());
}

/// A symlink leading out of the root (to a file, to nothing, in a loop) is refused like a
/// read of it: ERROR 2, with or without `allow_overwrite`, and the link stays.
#[test]
fn upload_over_a_symlink_leading_outside_is_refused() {
    let f = Fixture::new();
    let r = f.root_path();
    symlink("../outside/secret", r.join("victim")).unwrap();
    symlink(f.base().join("secret"), r.join("abs_victim")).unwrap();
    symlink("../outside/nothing", r.join("dangling_out")).unwrap();
    symlink("/dev/null", r.join("devnull")).unwrap();
    symlink("loop", r.join("loop")).unwrap();
    let links = ["victim", "abs_victim", "dangling_out", "devnull", "loop"];
    for overwrite in [false, true] {
        let root = f.root(RootOptions {
            allow_write: true,
            allow_overwrite: overwrite,
            ..RootOptions::default()
        });
        for name in links {
            assert_eq!(
                code(upload(&root, name, b"new content")),
                ErrorCode::ACCESS_VIOLATION,
                "{name:?}, overwrite: {overwrite}"
            );
        }
    }
    for link in links {
        assert!(
            fs::symlink_metadata(r.join(link)).unwrap().is_symlink(),
            "{link}"
        );
    }
    assert!(!f.base().join("outside/nothing").exists());
    f.assert_outside_untouched();
}

#[test]
fn dropped_upload_leaves_nothing_behind() {
    let f = Fixture::new();
    let root = f.writable();
    let before = names(&f.root_path());
    {
        let mut up = root.create_upload("partial.bin", Some(10)).unwrap();
        up.file().write_all(b"half").unwrap();
        assert_eq!(
            names(&f.root_path()).len(),
            before.len() + 1,
            "the temporary file"
        );
    }
    assert_eq!(names(&f.root_path()), before);
    // A failed commit cleans up too.
    let first = root.create_upload("race.bin", None).unwrap();
    let second = root.create_upload("race.bin", None).unwrap();
    first.commit().unwrap();
    assert_eq!(code(second.commit()), ErrorCode::FILE_EXISTS);
    let mut after = before.clone();
    after.insert("race.bin".to_string());
    assert_eq!(names(&f.root_path()), after);
}

#[test]
fn upload_size_cap() {
    let f = Fixture::new();
    let root = f.root(RootOptions {
        allow_write: true,
        max_upload_size: Some(1000),
        ..RootOptions::default()
    });
    // Up front, from the announced tsize.
    let e = root.create_upload("big", Some(1001)).unwrap_err();
    assert_eq!(e.code, ErrorCode::DISK_FULL);
    assert_eq!(e.message, "Disk full or allocation exceeded");
    // While receiving, for clients that announce nothing.
    let up = root.create_upload("big", None).unwrap();
    up.check_size(1000).unwrap();
    assert_eq!(code(up.check_size(1001)), ErrorCode::DISK_FULL);
    drop(up);
    upload(&root, "fits", &[1u8; 1000]).unwrap();
    assert_eq!(
        names(&f.root_path()),
        set(&["a", "fits", "hello.txt", "sub", "x"])
    );
    // No cap by default.
    f.writable()
        .create_upload("any", Some(u64::MAX))
        .unwrap()
        .check_size(u64::MAX)
        .unwrap();
}

#[test]
fn the_upload_sink_holds_the_cap() {
    let f = Fixture::new();
    let root = f.root(RootOptions {
        allow_write: true,
        max_upload_size: Some(1000),
        ..RootOptions::default()
    });
    // A client that announced nothing: the sink every adapter writes through refuses the
    // byte past the cap, and the refusal is ERROR 3.
    let mut up = root.create_upload("big", None).unwrap();
    let mut sink = up.sink().unwrap();
    sink.write_all(&[1u8; 600]).unwrap();
    sink.write_all(&[1u8; 400]).unwrap();
    let e = sink.write_all(&[1u8]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::QuotaExceeded);
    assert_eq!(FsError::from_write_error(e).code, ErrorCode::DISK_FULL);
    drop((sink, up));
    assert_eq!(names(&f.root_path()), set(&["a", "hello.txt", "sub", "x"]));
}

#[test]
fn write_errors_map_to_disk_full() {
    // /dev/full fails every write with ENOSPC.
    let Ok(mut full) = fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("skipped: no /dev/full");
        return;
    };
    let err = full
        .write_all(&[0u8; 512])
        .and_then(|()| full.flush())
        .unwrap_err();
    let e = FsError::from_write_error(err);
    assert_eq!(e.code, ErrorCode::DISK_FULL);
    assert_eq!(e.to_string(), "Disk full or allocation exceeded");
    assert!(e.io_error().is_some());
    assert_eq!(
        FsError::from_write_error(rustix::io::Errno::DQUOT.into()).code,
        ErrorCode::DISK_FULL
    );
}

/// Two uploads of one name, written and committed at the same time by two threads.
fn race(root: &Arc<Root>, name: &'static str) -> [Result<(), FsError>; 2] {
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = [b'A', b'B']
        .into_iter()
        .map(|byte| {
            let root = Arc::clone(root);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let up = root.create_upload(name, None);
                barrier.wait(); // both started before either commits
                let mut up = up?;
                for _ in 0..64 {
                    up.file()
                        .write_all(&[byte; 4096])
                        .map_err(FsError::from_write_error)?;
                }
                barrier.wait();
                up.commit()
            })
        })
        .collect();
    let mut results = handles.into_iter().map(|h| h.join().unwrap());
    [results.next().unwrap(), results.next().unwrap()]
}

fn assert_whole(path: &Path) {
    let data = fs::read(path).unwrap();
    assert_eq!(data.len(), 64 * 4096);
    assert!(
        data.iter().all(|&b| b == b'A') || data.iter().all(|&b| b == b'B'),
        "mixed content"
    );
}

#[test]
fn concurrent_uploads_without_overwrite_exactly_one_wins() {
    let f = Fixture::new();
    let root = Arc::new(f.writable());
    for _ in 0..20 {
        let [a, b] = race(&root, "contended.bin");
        let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{a:?} {b:?}");
        let loser = if a.is_err() { a } else { b };
        assert_eq!(code(loser), ErrorCode::FILE_EXISTS);
        assert_whole(&f.root_path().join("contended.bin"));
        assert_eq!(
            names(&f.root_path()),
            set(&["a", "contended.bin", "hello.txt", "sub", "x"])
        );
        fs::remove_file(f.root_path().join("contended.bin")).unwrap();
    }
}

#[test]
fn concurrent_uploads_with_overwrite_last_wins_whole() {
    let f = Fixture::new();
    let root = Arc::new(f.root(RootOptions {
        allow_write: true,
        allow_overwrite: true,
        ..RootOptions::default()
    }));
    for _ in 0..20 {
        let [a, b] = race(&root, "contended.bin");
        a.unwrap();
        b.unwrap();
        assert_whole(&f.root_path().join("contended.bin"));
        assert_eq!(
            names(&f.root_path()),
            set(&["a", "contended.bin", "hello.txt", "sub", "x"])
        );
    }
}

#[test]
fn reads_run_concurrently() {
    let f = Fixture::new();
    let root = Arc::new(f.root(RootOptions::default()));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let root = Arc::clone(&root);
            thread::spawn(move || {
                for _ in 0..100 {
                    assert_eq!(read(&root, "/sub/inner.txt").unwrap(), b"inner");
                    assert_eq!(code(read(&root, "../secret")), ErrorCode::ACCESS_VIOLATION);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// How long after its last change a directory's index is trusted (see `tftp_server::fs`):
/// timestamps have a granularity, so a change in the same tick as the index was built would
/// go unnoticed; an index of a directory changed this recently is rebuilt at the next lookup.
const SETTLE: Duration = Duration::from_secs(3);

/// Waits (at most 10 s) until `dir` last changed (mtime and ctime) more than [`SETTLE`] ago,
/// so an index built from now on is kept. This waits for the clock, not for another thread.
fn settle(dir: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let meta = fs::metadata(dir).unwrap();
        let last = meta.mtime().max(meta.ctime());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        if now - last > SETTLE.as_secs() as i64 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{dir:?} keeps changing"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn case_insensitive(f: &Fixture) -> Root {
    f.root(RootOptions {
        case_insensitive: true,
        ..RootOptions::default()
    })
}

/// pxelinux probes many missing names; with `case_insensitive` each miss used to read the
/// whole directory (40 ms per miss with 100,000 entries). The directory is now read once and
/// its case-folded index kept until the directory changes.
#[test]
fn case_insensitive_misses_do_not_rescan_the_directory() {
    let f = Fixture::new();
    let many = f.root_path().join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..100_000 {
        fs::File::create(many.join(format!("File{i:06}.cfg"))).unwrap();
    }
    fs::write(many.join("PXELinux.cfg"), b"pxe").unwrap();
    settle(&many);
    settle(&f.root_path());
    let root = Arc::new(case_insensitive(&f));

    // What an async adapter runs on its runtime thread: never a directory listing.
    let exact = root.open_read_without_scan("many/PXELinux.cfg");
    assert!(matches!(exact, Some(Ok(_))), "an exact name needs no index");
    assert!(root.open_read_without_scan("many/pxelinux.cfg").is_none());
    assert!(root.open_read_without_scan("many/missing").is_none());
    assert_eq!(
        code(root.open_read_without_scan("../x").unwrap()),
        ErrorCode::ACCESS_VIOLATION
    );
    assert_eq!(root.directory_scans(), 0);

    // A burst of misses before the index exists: one listing, the others wait for it.
    let barrier = Arc::new(Barrier::new(8));
    let burst: Vec<_> = (0..8)
        .map(|i| {
            let (root, barrier) = (Arc::clone(&root), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                code(read(&root, &format!("many/01-52-54-00-12-34-{i:02}")))
            })
        })
        .collect();
    for miss in burst {
        assert_eq!(miss.join().unwrap(), ErrorCode::FILE_NOT_FOUND);
    }
    let scans = root.directory_scans();
    assert_eq!(scans, 1, "the first misses read the directory once");
    let (mut file, _) = root
        .open_read_without_scan("many/pxelinux.cfg")
        .expect("indexed")
        .unwrap();
    let mut data = Vec::new();
    file.read_to_end(&mut data).unwrap();
    assert_eq!(data, b"pxe");
    assert_eq!(
        code(
            root.open_read_without_scan("many/missing")
                .expect("indexed")
        ),
        ErrorCode::FILE_NOT_FOUND
    );
    for i in 0..20 {
        let name = format!("MANY/C0A8{i:04X}");
        assert_eq!(
            code(read(&root, &name)),
            ErrorCode::FILE_NOT_FOUND,
            "{name}"
        );
    }
    assert_eq!(read(&root, "many/pxelinux.CFG").unwrap(), b"pxe");
    assert_eq!(read(&root, "Many/FILE099999.CFG").unwrap(), b"");
    assert_eq!(
        root.directory_scans(),
        2,
        "later lookups use the index (one more scan: the root, for `MANY`)"
    );
}

/// The index follows the directory: a file created or renamed after it was built is found by
/// its new name, and not by its old one, even when the directory's mtime is put back.
#[test]
fn case_insensitive_index_follows_directory_changes() {
    let f = Fixture::new();
    let boot = f.root_path().join("boot");
    fs::create_dir(&boot).unwrap();
    fs::write(boot.join("Default.cfg"), b"default").unwrap();
    settle(&boot);
    let root = case_insensitive(&f);

    assert_eq!(read(&root, "boot/default.CFG").unwrap(), b"default");
    assert_eq!(code(read(&root, "boot/new.cfg")), ErrorCode::FILE_NOT_FOUND);
    let scans = root.directory_scans();

    // Created after the index was built.
    fs::write(boot.join("New.CFG"), b"new").unwrap();
    assert_eq!(read(&root, "boot/new.cfg").unwrap(), b"new");
    assert!(root.directory_scans() > scans, "the index was rebuilt");

    // Renamed, with the directory's mtime put back (as `tar` or `rsync -t` do): the change of
    // its ctime is enough.
    settle(&boot);
    assert_eq!(read(&root, "boot/NEW.cfg").unwrap(), b"new");
    let scans = root.directory_scans();
    keeping_mtime(&boot, || {
        fs::rename(boot.join("New.CFG"), boot.join("Renamed.Cfg")).unwrap();
    });
    assert_eq!(read(&root, "boot/renamed.cfg").unwrap(), b"new");
    assert_eq!(code(read(&root, "boot/new.cfg")), ErrorCode::FILE_NOT_FOUND);
    assert!(root.directory_scans() > scans, "the index was rebuilt");

    // Removed.
    settle(&boot);
    assert_eq!(read(&root, "boot/RENAMED.cfg").unwrap(), b"new");
    keeping_mtime(&boot, || fs::remove_file(boot.join("Renamed.Cfg")).unwrap());
    assert_eq!(
        code(read(&root, "boot/RENAMED.CFG")),
        ErrorCode::FILE_NOT_FOUND
    );
    assert_eq!(read(&root, "BOOT/DEFAULT.CFG").unwrap(), b"default");
}

/// Runs `change` on `dir`, then puts the directory's mtime back.
fn keeping_mtime(dir: &Path, change: impl FnOnce()) {
    let mtime = fs::metadata(dir).unwrap().modified().unwrap();
    change();
    fs::File::open(dir).unwrap().set_modified(mtime).unwrap();
    assert_eq!(fs::metadata(dir).unwrap().modified().unwrap(), mtime);
}

/// A temporary upload name as `create_upload` makes them: `.NAME.tftp-` and 16 hex digits.
fn temp_name(stem: &str) -> String {
    format!(".{stem}.tftp-0123456789abcdef")
}

/// Sets `path`'s (not a symlink's target's) modification time to two hours ago.
fn make_old(path: &Path) {
    let two_hours_ago = rustix::fs::Timespec {
        tv_sec: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 7200,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: two_hours_ago,
        last_modification: two_hours_ago,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// A server killed during an upload leaves its temporary file behind. Opening a root for
/// writing removes those not modified for an hour (an upload in progress writes to its file
/// at every block, and may belong to another server sharing the root), and nothing else.
#[test]
fn stale_upload_temporaries_are_removed_when_a_writable_root_opens() {
    let f = Fixture::new();
    let r = f.root_path();
    let stale = [
        temp_name("boot.img"),
        format!("sub/{}", temp_name("inner.txt")),
    ];
    for name in &stale {
        fs::write(r.join(name), b"partial").unwrap();
        make_old(&r.join(name));
    }
    fs::create_dir_all(r.join("a/b/c")).unwrap();
    let deep = format!("a/b/c/{}", temp_name("deep"));
    fs::write(r.join(&deep), b"partial").unwrap();
    make_old(&r.join(&deep));
    // Kept: a recent temporary file, names that only look alike, what is not a regular file,
    // and anything outside the root.
    let fresh = temp_name("fresh");
    fs::write(r.join(&fresh), b"in progress").unwrap();
    let kept_files = [
        ".x.tftp-0123".to_string(),
        "x.tftp-0123456789abcdef".to_string(),
        ".x.tftp-0123456789ABCDEF".to_string(),
        ".tftp-0123456789abcdef".to_string(),
        ".x.tftp-0123456789abcdeg".to_string(),
        ".x.tftp-0123456789abcdef0".to_string(),
        "hello.txt".to_string(),
    ];
    for name in &kept_files {
        fs::write(r.join(name), b"keep").unwrap();
        make_old(&r.join(name));
    }
    let dir_like = temp_name("dir");
    fs::create_dir(r.join(&dir_like)).unwrap();
    make_old(&r.join(&dir_like));
    let link_like = temp_name("link");
    symlink("hello.txt", r.join(&link_like)).unwrap();
    make_old(&r.join(&link_like));
    let outside = f.base().join("outside").join(temp_name("secret"));
    fs::write(&outside, b"outside").unwrap();
    make_old(&outside);
    symlink("../outside", r.join("dir_out")).unwrap();

    // Read-only: nothing is touched.
    drop(f.root(RootOptions::default()));
    for name in stale.iter().chain([&deep]) {
        assert!(r.join(name).exists(), "{name}");
    }

    drop(f.writable());
    for name in stale.iter().chain([&deep]) {
        assert!(!r.join(name).exists(), "{name} removed");
    }
    for name in kept_files.iter().chain([&fresh, &dir_like]) {
        assert!(r.join(name).exists(), "{name} kept");
    }
    assert!(fs::symlink_metadata(r.join(&link_like)).is_ok());
    assert_eq!(fs::read(&outside).unwrap(), b"outside");
    assert_eq!(names(&r.join("sub")), set(&["inner.txt"]));
}

/// Names of temporary upload files are refused (ERROR 2): reading one would serve a partial
/// upload, and writing one could replace another client's upload in progress or create a file
/// the stale-file sweep later removes.
#[test]
fn names_of_upload_temporaries_are_refused() {
    let f = Fixture::new();
    let root = f.root(RootOptions {
        allow_write: true,
        allow_overwrite: true,
        case_insensitive: true,
        ..RootOptions::default()
    });
    let mut in_progress = root.create_upload("boot.img", None).unwrap();
    in_progress.file().write_all(b"partial").unwrap();
    let temp = names(&f.root_path())
        .into_iter()
        .find(|n| n.starts_with(".boot.img.tftp-"))
        .unwrap();
    let av = ErrorCode::ACCESS_VIOLATION;
    for name in [
        temp.clone(),
        format!("/{temp}"),
        temp.to_uppercase(),
        temp_name("other"),
        format!("sub/{}", temp_name("inner.txt")),
    ] {
        assert_eq!(code(read(&root, &name)), av, "read {name:?}");
        assert_eq!(code(upload(&root, &name, b"evil")), av, "upload {name:?}");
    }
    // A file of that form put there by other means is not served either.
    fs::write(f.root_path().join(temp_name("x")), b"x").unwrap();
    assert_eq!(code(read(&root, &temp_name("x"))), av);
    // The upload in progress is intact and completes.
    in_progress.file().write_all(b" and the rest").unwrap();
    in_progress.commit().unwrap();
    assert_eq!(read(&root, "boot.img").unwrap(), b"partial and the rest");
    assert_eq!(
        names(&f.root_path()),
        set(&["a", "boot.img", "hello.txt", "sub", "x", &temp_name("x")])
    );
}

/// Each refusal carries a reason for the operator's log; the client's message stays the
/// fixed one.
#[test]
fn refusals_say_why() {
    use tftp_server::fs::reason;
    let f = Fixture::new();
    let r = f.root_path();
    fs::hard_link(f.base().join("outside/secret"), r.join("hl")).unwrap();
    symlink("../outside/secret", r.join("out")).unwrap();
    symlink("/etc/passwd", r.join("abs")).unwrap();
    symlink("loop", r.join("loop")).unwrap();
    let root = f.root(RootOptions::default());
    let why = |name: &str| {
        let e = root.open_read(name).unwrap_err();
        assert!(
            ["Access violation", "File not found"].contains(&e.message),
            "{name:?}: {e}"
        );
        e.reason()
    };
    assert_eq!(why("hl"), reason::HARD_LINKED);
    assert_eq!(why("out"), reason::OUTSIDE_ROOT);
    assert_eq!(why("abs"), reason::OUTSIDE_ROOT);
    assert_eq!(why("loop"), reason::SYMLINK_LOOP);
    assert_eq!(why("sub"), reason::DIRECTORY);
    assert_eq!(why("../secret"), reason::DOT_DOT);
    assert_eq!(why("a\0b"), reason::NUL);
    assert_eq!(why(&"a".repeat(MAX_NAME_LEN + 1)), reason::NAME_TOO_LONG);
    assert_eq!(why(".x.tftp-0123456789abcdef"), reason::TEMPORARY);
    assert_eq!(why("missing"), reason::NOT_FOUND);
    assert_eq!(why("hello.txt/x"), reason::NOT_A_DIRECTORY);
    let e = root.create_upload("new", None).err().unwrap();
    assert_eq!(e.reason(), reason::WRITE_DISABLED);
    let root = f.writable();
    let e = root.create_upload("hello.txt", None).err().unwrap();
    assert_eq!(e.reason(), reason::EXISTS);
    let e = root.create_upload("sub", None).err().unwrap();
    assert_eq!(e.reason(), reason::DIRECTORY);
    let e = root.create_upload("out", None).err().unwrap();
    assert_eq!(e.reason(), reason::LINK_NOT_REPLACEABLE);
}

/// Opening a root the server's user may not search fails at once, saying so (rather than
/// serving it with every request refused).
#[test]
fn a_root_the_user_cannot_search_does_not_open() {
    let f = Fixture::new();
    fs::set_permissions(f.root_path(), fs::Permissions::from_mode(0o600)).unwrap();
    if fs::read_dir(f.root_path().join("sub")).is_ok() {
        eprintln!("skipped: running with privileges that bypass file permissions");
        fs::set_permissions(f.root_path(), fs::Permissions::from_mode(0o755)).unwrap();
        return;
    }
    let e = Root::open(f.root_path(), RootOptions::default()).unwrap_err();
    fs::set_permissions(f.root_path(), fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("may not search"), "{e}");
}

#[test]
fn running_out_of_descriptors_is_server_busy_not_an_io_error() {
    for errno in [24, 23] {
        // EMFILE, ENFILE: the root could not open the file, the handler could not open its
        // own: the client is told to come back.
        let fs = FsError::from_io(std::io::Error::from_raw_os_error(errno));
        assert_eq!(fs.message, "Server busy, try again later");
        let handler = tftp_server::HandlerError::from(std::io::Error::from_raw_os_error(errno));
        assert_eq!(handler.message, "Server busy, try again later");
    }
    let other = FsError::from_io(std::io::Error::from_raw_os_error(5));
    assert_eq!(other.message, "I/O error");
}
