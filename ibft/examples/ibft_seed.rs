//! Writes the seeds of the `ibft` fuzz target (`scripts/fuzz-seed` runs it): the tables of the
//! VM acceptance test (`tests/ibft_vm/tables.rs`: the shapes and layouts firmware produces,
//! and tables the kernel refuses), each as the writer lays it out.
//!
//! ```text
//! ibft_seed OUT_DIR
//! ```

use std::error::Error;
use std::path::PathBuf;

#[path = "../../tests/ibft_vm/tables.rs"]
#[allow(dead_code)]
mod tables;

fn main() -> Result<(), Box<dyn Error>> {
    let out: PathBuf = std::env::args()
        .nth(1)
        .ok_or("usage: ibft_seed OUT_DIR")?
        .into();
    let dir = out.join("ibft");
    std::fs::create_dir_all(&dir)?;
    for case in tables::cases() {
        let bytes = sanshim_ibft::writer::emit(&case.ibft, &case.layout)?;
        std::fs::write(dir.join(case.name), &bytes)?;
        println!("ibft/{} {} bytes", case.name, bytes.len());
    }
    Ok(())
}
