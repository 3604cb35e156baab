//! The module layering of ../shared/DESIGN.md ("Where the engine goes next"), checked on the
//! source text: dependencies point down (roles -> tunnel -> transport -> wire; tunnel -> link
//! -> {wire, impair, capture} -> topology), no two modules import each other, only `src/tui`
//! draws, only `src/cli` (and `main.rs`) knows clap, transport and wire stay free of tokio,
//! and panels share `render/parts.rs` instead of importing each other. A new upward import
//! fails here, with the file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layered module's rank: a module may import only modules of a lower rank. Modules
/// not listed (small helpers such as `net` or `secret`) are held only to the no-circle rule.
const RANKS: &[(&str, u32)] = &[
    ("topology", 0),
    ("wire", 1),
    ("impair", 2),
    ("transport", 3),
    ("event", 4),
    ("capture", 5),
    ("describe", 5),
    ("link", 6),
    ("tunnel", 7),
    ("roles", 8),
    ("lab", 9),
    ("monitor", 10),
    ("script", 11),
    ("cli", 11),
    ("headless", 12),
    ("tui", 13),
    ("app", 14),
];

/// One source file: its path, its top-level module, and its lines that are not comments.
struct Source {
    path: PathBuf,
    module: String,
    code: Vec<(usize, String)>,
}

fn sources() -> Vec<Source> {
    let mut files = Vec::new();
    collect(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path(),
        &mut files,
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&src).unwrap().to_path_buf();
            let first = relative.components().next().unwrap().as_os_str();
            let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .lines()
                .enumerate()
                .filter(|(_, line)| !line.trim_start().starts_with("//"))
                .map(|(number, line)| (number + 1, line.to_string()))
                .collect();
            Source {
                path: relative,
                module,
                code,
            }
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// The names that follow `prefix` in `line` (`crate::wire::Frame` gives `wire`).
fn names_after<'a>(line: &'a str, prefix: &str) -> Vec<&'a str> {
    line.match_indices(prefix)
        .filter(|(at, _)| {
            // `tunlab::crate::` is not a thing, but `my_crate::x` must not count.
            !line[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(at, _)| {
            let rest = &line[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The names inside the braces that follow `prefix` (`super::{parts, trace}`).
fn braced_after<'a>(line: &'a str, prefix: &str) -> Vec<&'a str> {
    let Some(at) = line.find(prefix) else {
        return Vec::new();
    };
    let rest = &line[at + prefix.len()..];
    let inside = &rest[..rest.find('}').unwrap_or(rest.len())];
    inside
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|name| !name.is_empty())
        .collect()
}

/// Every `crate::<module>` import between different top-level modules: (from, to) -> where.
fn imports(sources: &[Source]) -> BTreeMap<(String, String), Vec<String>> {
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for source in sources {
        for (number, line) in &source.code {
            for target in names_after(line, "crate::") {
                if target != source.module {
                    edges
                        .entry((source.module.clone(), target.to_string()))
                        .or_default()
                        .push(format!("{}:{number}", source.path.display()));
                }
            }
        }
    }
    edges
}

#[test]
fn dependencies_point_down() {
    let ranks: BTreeMap<&str, u32> = RANKS.iter().copied().collect();
    let mut upward = Vec::new();
    for ((from, to), places) in imports(&sources()) {
        if let (Some(from_rank), Some(to_rank)) = (ranks.get(from.as_str()), ranks.get(to.as_str()))
            && from_rank <= to_rank
        {
            upward.push(format!("{from} imports {to} at {}", places.join(", ")));
        }
    }
    assert!(
        upward.is_empty(),
        "imports that point up (or sideways) the layers:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other() {
    let edges = imports(&sources());
    let mut circles = Vec::new();
    for ((from, to), places) in &edges {
        if from < to
            && let Some(back) = edges.get(&(to.clone(), from.clone()))
        {
            circles.push(format!(
                "{from} <-> {to}: {} and {}",
                places.join(", "),
                back.join(", ")
            ));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn topology_imports_nothing_of_the_crate() {
    let offending: Vec<String> = sources()
        .iter()
        .filter(|source| source.module == "topology")
        .flat_map(|source| {
            source
                .code
                .iter()
                .filter(|(_, line)| line.contains("crate::") || line.contains("super::"))
                .map(move |(number, line)| format!("{}:{number}: {line}", source.path.display()))
        })
        .collect();
    assert!(offending.is_empty(), "{}", offending.join("\n"));
}

#[test]
fn only_the_tui_draws() {
    let offending: Vec<String> = sources()
        .iter()
        .filter(|source| source.module != "tui")
        .flat_map(|source| {
            source
                .code
                .iter()
                .filter(|(_, line)| {
                    !names_after(line, "ratatui").is_empty()
                        || !names_after(line, "crossterm").is_empty()
                        || line.contains("ratatui::")
                        || line.contains("crossterm::")
                })
                .map(move |(number, line)| format!("{}:{number}: {line}", source.path.display()))
        })
        .collect();
    assert!(
        offending.is_empty(),
        "ratatui/crossterm outside src/tui:\n{}",
        offending.join("\n")
    );
}

/// Whether `line` names clap: the crate as a word (`use clap::Args`, `clap::ValueEnum`,
/// `#[clap(...)]`), or one of its derive attributes (`#[arg(...)]`, `#[command(...)]`,
/// `#[value(...)]`), which only a clap derive accepts.
fn mentions_clap(line: &str) -> bool {
    let is_name = |c: char| c.is_alphanumeric() || c == '_';
    let crate_named = line.match_indices("clap").any(|(at, _)| {
        !line[..at].chars().next_back().is_some_and(is_name)
            && !line[at + "clap".len()..]
                .chars()
                .next()
                .is_some_and(is_name)
    });
    let attribute = ["#[arg(", "#[command(", "#[value("]
        .iter()
        .any(|attribute| line.trim_start().starts_with(attribute));
    crate_named || attribute
}

#[test]
fn only_the_command_line_knows_clap() {
    // `src/cli` holds the clap definitions and `main.rs` parses them; the engine takes its
    // own settings types, and `app` gives the parsed values their meaning without clap.
    let offending: Vec<String> = sources()
        .iter()
        .filter(|source| source.module != "cli" && source.module != "main")
        .flat_map(|source| {
            source
                .code
                .iter()
                .filter(|(_, line)| mentions_clap(line))
                .map(move |(number, line)| format!("{}:{number}: {line}", source.path.display()))
        })
        .collect();
    assert!(
        offending.is_empty(),
        "clap outside src/cli and src/main.rs (put the flags in src/cli, their meaning in \
         src/app/args.rs):\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_clap_rule_sees_clap_and_only_clap() {
    for line in [
        "use clap::Args;",
        "    clap::ValueEnum,",
        "#[derive(Debug, clap::Parser)]",
        "    #[arg(long, value_name = \"PCT\")]",
        "#[command(next_help_heading = \"SOCKS5\")]",
        "    #[value(name = \"newreno\")]",
        "fn f() -> Result<(), clap::Error> {",
    ] {
        assert!(mentions_clap(line), "{line}");
    }
    for line in [
        "let clapped = 1;",
        "use crate::cli::LinkArgs;",
        "#[serde(rename = \"newreno\")]",
        "let value = args.value;",
    ] {
        assert!(!mentions_clap(line), "{line}");
    }
}

#[test]
fn transport_and_wire_stay_free_of_tokio() {
    let offending: Vec<String> = sources()
        .iter()
        .filter(|source| source.module == "transport" || source.module == "wire")
        .flat_map(|source| {
            source
                .code
                .iter()
                .filter(|(_, line)| line.contains("tokio"))
                .map(move |(number, line)| format!("{}:{number}: {line}", source.path.display()))
        })
        .collect();
    assert!(
        offending.is_empty(),
        "tokio in the sans-IO layers:\n{}",
        offending.join("\n")
    );
}

#[test]
fn panels_import_parts_never_each_other() {
    let sources = sources();
    let render = Path::new("tui").join("render");
    let panels: BTreeSet<String> = sources
        .iter()
        .filter(|source| source.path.parent() == Some(render.as_path()))
        .map(|source| {
            let stem = source.path.file_stem().unwrap().to_string_lossy();
            stem.to_string()
        })
        .filter(|stem| stem != "mod" && stem != "parts")
        .collect();
    assert!(panels.len() > 5, "the panels were not found: {panels:?}");
    let mut offending = Vec::new();
    for source in &sources {
        if source.path.parent() != Some(render.as_path()) {
            continue;
        }
        let stem = source
            .path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        if !panels.contains(&stem) && stem != "parts" {
            continue;
        }
        for (number, line) in &source.code {
            let named = names_after(line, "super::")
                .into_iter()
                .chain(names_after(line, "crate::tui::render::"))
                .chain(braced_after(line, "super::{"))
                .chain(braced_after(line, "crate::tui::render::{"));
            for other in named {
                if panels.contains(other) && other != stem {
                    offending.push(format!("{}:{number}: {line}", source.path.display()));
                }
            }
        }
    }
    assert!(
        offending.is_empty(),
        "panels importing each other (share it in render/parts.rs):\n{}",
        offending.join("\n")
    );
}
