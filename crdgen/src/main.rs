//! `crdgen DIR` writes the CRDs of every built-in kind into DIR;
//! `crdgen --check DIR` exits non-zero if DIR differs from what would be written.
//! `crdgen protobuf [--check]` writes (checks) `protobuf/descriptors.json`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crdgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let mut check = false;
    let mut dir = None;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("protobuf") {
        return protobuf(&args[1..]);
    }
    for arg in args {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("usage: crdgen [--check] DIR | crdgen protobuf [--check]");
                return Ok(ExitCode::SUCCESS);
            }
            a if a.starts_with('-') => {
                anyhow::bail!("unknown option {a}; usage: crdgen [--check] DIR")
            }
            a if dir.is_none() => dir = Some(PathBuf::from(a)),
            a => anyhow::bail!("unexpected argument {a}; usage: crdgen [--check] DIR"),
        }
    }
    let dir = dir.ok_or_else(|| anyhow::anyhow!("usage: crdgen [--check] DIR"))?;
    let files = crdgen::generate()?;
    if check {
        let drift = crdgen::check(&dir, &files)?;
        if drift.is_empty() {
            println!("{}: {} files up to date", dir.display(), files.len());
            Ok(ExitCode::SUCCESS)
        } else {
            eprint!("{drift}");
            eprintln!(
                "{} is out of date; regenerate with: {}",
                dir.display(),
                crdgen::REGENERATE
            );
            Ok(ExitCode::FAILURE)
        }
    } else {
        crdgen::write(&dir, &files)?;
        println!("wrote {} files to {}", files.len(), dir.display());
        Ok(ExitCode::SUCCESS)
    }
}

fn protobuf(args: &[String]) -> anyhow::Result<ExitCode> {
    let check = match args {
        [] => false,
        [a] if a == "--check" => true,
        _ => anyhow::bail!("usage: crdgen protobuf [--check]"),
    };
    let path = PathBuf::from(crdgen::protobuf::PATH);
    let generated = crdgen::protobuf::generate()?;
    for w in &generated.warnings {
        eprintln!("warning: {w}");
    }
    if check {
        match crdgen::protobuf::check(&path, &generated.json)? {
            None => {
                println!("{}: up to date", path.display());
                Ok(ExitCode::SUCCESS)
            }
            Some(drift) => {
                eprint!("{drift}");
                eprintln!("regenerate with: {}", crdgen::protobuf::REGENERATE);
                Ok(ExitCode::FAILURE)
            }
        }
    } else {
        crdgen::protobuf::write(&path, &generated.json)?;
        println!("wrote {} ({} bytes)", path.display(), generated.json.len());
        Ok(ExitCode::SUCCESS)
    }
}
