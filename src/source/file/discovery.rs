//! Which files a `file` source reads: `include` globs minus `exclude` globs,
//! found by walking each glob's literal base directory.
//!
//! `*` does not cross `/`; `**` does. Discovery lists paths only; what a path
//! holds (its identity) is the tailer's business. A directory that matches is
//! listed too (the tailer says it is skipped and why), unless the glob's last
//! part is only `*` or `**`: `logs/*` means "everything in logs/", and its
//! subdirectories are expected there.

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::config::invalid::Invalid;

/// The include / exclude globs of one source.
#[derive(Debug, Clone)]
pub struct Globs {
    include: Vec<Include>,
    exclude: GlobSet,
}

#[derive(Debug, Clone)]
struct Include {
    base: PathBuf,
    /// How deep below `base` a match can be; `None` with `**`.
    depth: Option<usize>,
    matcher: globset::GlobMatcher,
    /// Whether a directory that matches is worth a word (see the module doc).
    report_dirs: bool,
}

fn glob(pattern: &str) -> Result<globset::Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))
}

impl Globs {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Globs, Invalid> {
        if include.is_empty() {
            return Err(Invalid::at(
                &["include"],
                "`include` is empty: list at least one glob, e.g. `./logs/*.log`",
            ));
        }
        let mut inc = Vec::new();
        for (index, pattern) in include.iter().enumerate() {
            let err = |message| Invalid::at(&["include".to_string(), index.to_string()], message);
            let matcher = glob(pattern).map_err(err)?.compile_matcher();
            let (base, depth) = split_base(pattern);
            let last = Path::new(pattern)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            inc.push(Include {
                base,
                depth,
                matcher,
                report_dirs: !last.chars().all(|c| c == '*'),
            });
        }
        let mut ex = GlobSetBuilder::new();
        for (index, pattern) in exclude.iter().enumerate() {
            ex.add(glob(pattern).map_err(|message| {
                Invalid::at(&["exclude".to_string(), index.to_string()], message)
            })?);
        }
        let exclude = ex
            .build()
            .map_err(|e| Invalid::at(&["exclude"], e.to_string()))?;
        Ok(Globs {
            include: inc,
            exclude,
        })
    }

    /// Paths that match now, sorted, and the directories that could not be
    /// listed. Most are files (or links to them); directories, FIFOs and the
    /// like are listed too, for the tailer to report.
    pub fn discover(&self) -> (Vec<PathBuf>, Vec<(PathBuf, std::io::Error)>) {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for inc in &self.include {
            walk(
                &inc.base,
                inc.depth.unwrap_or(16),
                &mut |p, is_dir| {
                    if (!is_dir || inc.report_dirs)
                        && inc.matcher.is_match(p)
                        && !self.exclude.is_match(p)
                    {
                        found.push(p.to_path_buf());
                    }
                },
                &mut errors,
            );
        }
        found.sort();
        found.dedup();
        (found, errors)
    }
}

/// The directory a glob starts from, and how deep below it a match can be
/// (`None` with `**`).
fn split_base(pattern: &str) -> (PathBuf, Option<usize>) {
    let mut base = PathBuf::new();
    let mut comps = Path::new(pattern).components().peekable();
    while let Some(c) = comps.peek() {
        let s = c.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[', '{']) {
            break;
        }
        base.push(c);
        comps.next();
    }
    let rest: Vec<Component> = comps.collect();
    if rest.is_empty() {
        // A literal path: the file itself is the only match.
        let parent = base.parent().map(Path::to_path_buf).unwrap_or_default();
        return (parent, Some(1));
    }
    let deep = rest.iter().any(|c| c.as_os_str() == "**");
    (base, (!deep).then_some(rest.len()))
}

/// Calls `found(path, is_dir)` for everything below `dir`, `depth` levels deep.
fn walk(
    dir: &Path,
    depth: usize,
    found: &mut dyn FnMut(&Path, bool),
    errors: &mut Vec<(PathBuf, std::io::Error)>,
) {
    if depth == 0 {
        return;
    }
    let shown = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = match std::fs::read_dir(shown) {
        Ok(e) => e,
        Err(e) => {
            errors.push((shown.to_path_buf(), e));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = dir.join(entry.file_name());
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            found(&path, true);
            walk(&path, depth - 1, found, errors);
        } else {
            found(&path, false);
        }
    }
}

impl Globs {
    /// The directories to watch for events, and whether recursively.
    pub fn watch_dirs(&self) -> Vec<(PathBuf, bool)> {
        self.include
            .iter()
            .map(|i| (i.base.clone(), i.depth.is_none_or(|d| d > 1)))
            .collect()
    }
}

/// Why a matching path that is not a regular file is skipped, and what to
/// do instead; `None` for a regular file.
pub fn not_a_file(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let shown = path.display();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        format!(
            "{shown} is a directory, not a file; skipping it (to read the files in it, include a glob like `{shown}/*.log`)"
        )
    } else if t.is_fifo() {
        format!(
            "{shown} is a FIFO (named pipe), not a regular file; skipping it (to read a pipe, use a `stdin` source: `weir run PIPELINE < {shown}`)"
        )
    } else if t.is_socket() {
        format!("{shown} is a socket, not a regular file; skipping it (exclude it from the globs)")
    } else if t.is_char_device() || t.is_block_device() {
        format!("{shown} is a device, not a regular file; skipping it (exclude it from the globs)")
    } else {
        format!("{shown} is not a regular file; skipping it (exclude it from the globs)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_start_from_their_literal_directory() {
        assert_eq!(
            split_base("./logs/*.log"),
            (PathBuf::from("./logs"), Some(1))
        );
        assert_eq!(
            split_base("/var/log/**/*.log"),
            (PathBuf::from("/var/log"), None)
        );
        assert_eq!(split_base("logs/app.log"), (PathBuf::from("logs"), Some(1)));
        assert_eq!(split_base("*.log"), (PathBuf::from(""), Some(1)));
    }

    #[test]
    fn discovers_matching_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        for f in ["a.log", "b.log", "c.txt", "skip.log", "sub/d.log"] {
            std::fs::write(d.join(f), "x\n").unwrap();
        }
        let include = vec![format!("{}/*.log", d.display())];
        let exclude = vec![format!("{}/skip*", d.display())];
        let (found, errors) = Globs::new(&include, &exclude).unwrap().discover();
        assert!(errors.is_empty());
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.log", "b.log"]);

        let deep = vec![format!("{}/**/*.log", d.display())];
        let (found, _) = Globs::new(&deep, &[]).unwrap().discover();
        assert_eq!(found.len(), 4);
    }

    #[test]
    fn matching_directories_are_listed_unless_the_glob_asks_for_everything() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("old.log")).unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("a.log"), "x\n").unwrap();
        let names = |pattern: &str| -> Vec<String> {
            let (found, _) = Globs::new(&[format!("{}/{pattern}", d.display())], &[])
                .unwrap()
                .discover();
            found
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names("*.log"), ["a.log", "old.log"]);
        assert_eq!(names("*"), ["a.log"]);
        let old = d.join("old.log");
        let meta = std::fs::metadata(&old).unwrap();
        assert_eq!(
            not_a_file(&old, &meta).unwrap(),
            format!(
                "{} is a directory, not a file; skipping it (to read the files in it, include a glob like `{}/*.log`)",
                old.display(),
                old.display()
            )
        );
        let meta = std::fs::metadata(d.join("a.log")).unwrap();
        assert_eq!(not_a_file(&d.join("a.log"), &meta), None);
    }

    #[test]
    fn bad_globs_name_their_entry() {
        let err = Globs::new(&["ok/*.log".into(), "bad/[.log".into()], &[]).unwrap_err();
        assert_eq!(err.path, ["include", "1"]);
        assert!(Globs::new(&[], &[]).is_err());
    }
}
