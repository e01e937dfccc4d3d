//! `kontor check`: every problem in workflow files, printed like a compiler's
//! (`file:line:col: error: …`), without running anything — for editors, CI and a
//! quick look before `kontor serve` picks a change up.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kontor::config::Config;
use kontor::workflow::Catalog;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Workflow folders or files (default: `workflows_dir` from the config).
    pub paths: Vec<PathBuf>,
}

/// Every problem under the given folders, or only in the given files.
pub fn run(config: &Config, args: CheckArgs) -> ExitCode {
    let paths = if args.paths.is_empty() {
        vec![config.workflows_dir.clone()]
    } else {
        args.paths
    };
    let mut problems = 0usize;
    let mut checked = 0usize;
    // Plugins are loaded for real (from the on-disk code cache when warm), so a step
    // naming a plugin that is missing or does not export `step` is a problem here.
    let plugins = match super::runtime().and_then(|rt| {
        rt.block_on(kontor::server::plugin_registry(
            config,
            None,
            Default::default(),
        ))
    }) {
        Ok(registry) => {
            let index = kontor::workflow::PluginIndex::from_registry(&registry);
            for (name, problem) in &index.plugins {
                if let Some(problem) = problem {
                    let file = index.dir.join(format!("{name}.wasm")).display().to_string();
                    let problem = problem.strip_prefix(&format!("{file} ")).unwrap_or(problem);
                    println!("{file}: error: {problem}");
                    problems += 1;
                }
            }
            Some(index)
        }
        Err(e) => {
            eprintln!("error: the plugin runtime cannot start: {e:#}");
            problems += 1;
            None
        }
    };
    let channels = config.channel_names();
    for path in &paths {
        let (root, only) = if path.is_dir() {
            (path.clone(), None)
        } else if path.is_file() {
            (catalog_root(path), Some(path.clone()))
        } else {
            eprintln!("{}: error: no such file or folder", path.display());
            problems += 1;
            continue;
        };
        let catalog = Catalog::load_within(
            &root,
            plugins.as_ref(),
            Some(&channels),
            // Checked when the configuration was loaded.
            config
                .engine
                .max_workflow_file()
                .unwrap_or(kontor::workflow::DEFAULT_MAX_FILE_SIZE),
        );
        checked += match &only {
            Some(_) => 1,
            None => catalog.workflows.len(),
        };
        for diagnostic in catalog.all_diagnostics() {
            if only
                .as_ref()
                .is_some_and(|f| !same_file(f, &diagnostic.file))
            {
                continue;
            }
            println!("{diagnostic}");
            problems += 1;
        }
    }
    if problems > 0 {
        eprintln!("{problems} problem(s) found");
        ExitCode::FAILURE
    } else {
        eprintln!("ok: {checked} workflow file(s) checked, no problems");
        ExitCode::SUCCESS
    }
}

/// The catalog folder a single file belongs to: its own folder, or for a calendar's or
/// template's or territory's file the folder above `calendars/`, `templates/` or `territories/`. A bare file name is in
/// the current folder (`Path::parent` gives an empty path for it, which is no folder).
fn catalog_root(file: &Path) -> PathBuf {
    let parent = file.parent().map(PathBuf::from).unwrap_or_default();
    let root = file
        .ancestors()
        .find(|a| {
            a.file_name()
                .is_some_and(|n| n == "calendars" || n == "templates" || n == "territories")
        })
        .and_then(|a| a.parent())
        .map(PathBuf::from)
        .unwrap_or(parent);
    if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
