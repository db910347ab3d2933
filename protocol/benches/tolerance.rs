//! The study behind Freivalds' tolerances (`protocol/src/freivalds/`): does the check catch every
//! cheap way to fake a product, and does it ever reject an honest one?
//!
//! 1. Cheat kind × k → share of tries caught. Each cell is at least 10⁴ checks: fresh inputs
//!    (uniform in [−1, 1)) and a fresh cheat for each of `INSTANCES` instances, checked with
//!    fresh secret seeds many times each (the cheat's output is shared across those tries: what
//!    varies between them is what the contributor cannot know). Tiles shrink as k grows so a
//!    run takes minutes on two cores: 64 × 64 up to k = 256 (the relay's unit is 64 × 64 × 256),
//!    32 × 32 at 1024, 16 × 16 at 4096, 8 × 8 at 16384. "One element off" moves one random
//!    element by 10⁻³ of its row's magnitude, the RMS of the correct values of that row of C.
//! 2. Honest order × k → share rejected, over five kinds of data (uniform [−1, 1) and [0, 1),
//!    normal, constant 0.1, ± lognormal with σ = 2), fresh data and seed for every tile; counted
//!    in element trials (every element of every checked tile), at least 10⁷ in all.
//! 3. Per data kind and k: the share of rows that needed tier 2 and the check's mean time per
//!    tile.
//!
//! The margin per k is the smallest residual of a caught cheat over the largest residual of an
//! honest product, where a residual is a product's largest element error in units of
//! u·sqrt(Σ S² + Σ t²) (exact prefix sums and products; what tier 2's floor measures in).
//!
//! Run: `cargo xtask bench verification` (with the relay's verification benchmark), or
//! `cargo bench -p glowworm-protocol --bench tolerance`; writes `target/bench/tolerance.md`.
//! `GLOWWORM_TOLERANCE_SCALE` (default 1) scales every count, for a quick look.

#[allow(dead_code)] // `median` is the other benchmark's.
mod common;

use glowworm_protocol::freivalds::study::{Cheat, Data, Honest, Rng, honest_orders, residual};
use glowworm_protocol::freivalds::{self, Tier2Rows};
use glowworm_protocol::wire::MatmulShape;
use std::fmt::Write as _;
use std::time::Instant;

const KS: [u32; 6] = [1, 16, 256, 1024, 4096, 16384];
const INSTANCES: usize = 20;
const TRIES_PER_CELL: usize = 10_000;

fn tile(k: u32) -> MatmulShape {
    let side = match k {
        0..=256 => 64,
        257..=1024 => 32,
        1025..=4096 => 16,
        _ => 8,
    };
    MatmulShape {
        m: side,
        n: side,
        k,
    }
}

/// Honest element trials per order and k, over all data kinds.
fn honest_elements(k: u32) -> usize {
    match k {
        0..=16 => 500_000,
        17..=256 => 250_000,
        257..=1024 => 100_000,
        1025..=4096 => 40_000,
        _ => 20_000,
    }
}

fn scale() -> f64 {
    std::env::var("GLOWWORM_TOLERANCE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0)
}

struct CheatCell {
    tries: usize,
    caught: usize,
    /// Smallest residual among caught instances.
    min_residual: f64,
}

struct HonestCell {
    elements: usize,
    rejected_elements: usize,
    rejected_tiles: usize,
    max_residual: f64,
    /// The same, constant data left out (its errors are systematic), and the data it came from.
    max_residual_random_data: (f64, &'static str),
}

#[derive(Default, Clone, Copy)]
struct Cost {
    tiles: u64,
    rows: u64,
    tier2_rows: u64,
    seconds: f64,
}

fn main() {
    let scale = scale();
    let started = Instant::now();
    let cheats: Vec<Cheat> = Cheat::ALL
        .into_iter()
        .chain([Cheat::OneElement(1e-3)])
        .collect();

    // Table 1, one thread per half of the cheats.
    let cells: Vec<Vec<CheatCell>> = std::thread::scope(|s| {
        let halves: Vec<_> = cheats
            .chunks(cheats.len().div_ceil(2))
            .enumerate()
            .map(|(h, part)| {
                s.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(c, cheat)| {
                            KS.iter()
                                .map(|&k| cheat_cell(*cheat, k, scale, (h * 100 + c) as u64))
                                .collect()
                        })
                        .collect::<Vec<Vec<CheatCell>>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("cheat thread"))
            .collect()
    });
    for (cheat, row) in cheats.iter().zip(&cells) {
        let shares: Vec<String> = row
            .iter()
            .map(|c| format!("{}/{}", c.caught, c.tries))
            .collect();
        println!("{}: {}", cheat.label(), shares.join(", "));
    }

    // Tables 2 and 3.
    let orders = honest_orders();
    let mut costs = vec![[Cost::default(); KS.len()]; Data::ALL.len()];
    let honest: Vec<Vec<HonestCell>> = std::thread::scope(|s| {
        let halves: Vec<_> = orders
            .chunks(orders.len().div_ceil(2))
            .enumerate()
            .map(|(h, part)| {
                s.spawn(move || {
                    let mut costs = vec![[Cost::default(); KS.len()]; Data::ALL.len()];
                    let cells = part
                        .iter()
                        .enumerate()
                        .map(|(o, order)| {
                            KS.iter()
                                .enumerate()
                                .map(|(ki, &k)| {
                                    let seed = (1000 + h * 100 + o) as u64 * 64 + ki as u64;
                                    honest_cell(*order, k, scale, seed, &mut costs, ki)
                                })
                                .collect()
                        })
                        .collect::<Vec<Vec<HonestCell>>>();
                    (cells, costs)
                })
            })
            .collect();
        let mut all = Vec::new();
        for half in halves {
            let (cells, c) = half.join().expect("honest thread");
            all.extend(cells);
            for (d, per_k) in c.iter().enumerate() {
                for (ki, cost) in per_k.iter().enumerate() {
                    let total = &mut costs[d][ki];
                    total.tiles += cost.tiles;
                    total.rows += cost.rows;
                    total.tier2_rows += cost.tier2_rows;
                    total.seconds += cost.seconds;
                }
            }
        }
        all
    });

    let table = tables(&cheats, &cells, &orders, &honest, &costs, scale, started);
    common::publish(&table, "tolerance.md");
}

fn cheat_cell(cheat: Cheat, k: u32, scale: f64, seed: u64) -> CheatCell {
    let shape = tile(k);
    let mut rng = Rng::new(seed * 7919 + k as u64);
    let tries_each = ((TRIES_PER_CELL as f64 * scale) as usize)
        .div_ceil(INSTANCES)
        .max(1);
    let mut cell = CheatCell {
        tries: 0,
        caught: 0,
        min_residual: f64::INFINITY,
    };
    for _ in 0..INSTANCES {
        let a = Data::Uniform.matrix((shape.m * shape.k) as usize, &mut rng);
        let b = Data::Uniform.matrix((shape.k * shape.n) as usize, &mut rng);
        let c = cheat.product(&a, &b, shape, &mut rng);
        let mut caught = 0;
        for _ in 0..tries_each {
            if freivalds::check(&a, &b, &c, shape, rng.seed()).is_err() {
                caught += 1;
            }
        }
        if caught > 0 {
            cell.min_residual = cell.min_residual.min(residual(&a, &b, &c, shape));
        }
        cell.tries += tries_each;
        cell.caught += caught;
    }
    cell
}

fn honest_cell(
    order: Honest,
    k: u32,
    scale: f64,
    seed: u64,
    costs: &mut [[Cost; KS.len()]],
    ki: usize,
) -> HonestCell {
    let shape = tile(k);
    let mut rng = Rng::new(seed);
    let per_tile = (shape.m * shape.n) as usize;
    let per_data = (honest_elements(k) as f64 * scale / Data::ALL.len() as f64) as usize;
    let tiles = per_data.div_ceil(per_tile).max(1);
    let mut cell = HonestCell {
        elements: 0,
        rejected_elements: 0,
        rejected_tiles: 0,
        max_residual: 0.0,
        max_residual_random_data: (0.0, ""),
    };
    for (d, data) in Data::ALL.iter().enumerate() {
        for _ in 0..tiles {
            let a = data.matrix((shape.m * shape.k) as usize, &mut rng);
            let b = data.matrix((shape.k * shape.n) as usize, &mut rng);
            let c = order.product(&a, &b, shape, &mut rng);
            let mut tier2 = Tier2Rows::default();
            let timer = Instant::now();
            let verdict = freivalds::check_counting(&a, &b, &c, shape, rng.seed(), &mut tier2);
            let cost = &mut costs[d][ki];
            cost.seconds += timer.elapsed().as_secs_f64();
            cost.tiles += 1;
            cost.rows += shape.m as u64;
            cost.tier2_rows += tier2.rows;
            cell.elements += per_tile;
            if let Err(e) = verdict {
                eprintln!(
                    "HONEST REJECTED: {} on {} at k = {k}: {e}",
                    order.label(),
                    data.label()
                );
                cell.rejected_tiles += 1;
                cell.rejected_elements += 1;
            }
            let r = residual(&a, &b, &c, shape);
            cell.max_residual = cell.max_residual.max(r);
            if *data != Data::Constant && r > cell.max_residual_random_data.0 {
                cell.max_residual_random_data = (r, data.label());
            }
        }
    }
    cell
}

fn tables(
    cheats: &[Cheat],
    cells: &[Vec<CheatCell>],
    orders: &[Honest],
    honest: &[Vec<HonestCell>],
    costs: &[[Cost; KS.len()]],
    scale: f64,
    started: Instant,
) -> String {
    let mut out = String::new();
    let header = |out: &mut String, first: &str| {
        let _ = write!(out, "| {first} |");
        for k in KS {
            let s = tile(k);
            let _ = write!(out, " k = {k} ({}×{}) |", s.m, s.n);
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "| --- |{}", " ---: |".repeat(KS.len()));
    };
    let _ = writeln!(
        out,
        "# Freivalds' check: cheats caught, honest orders rejected\n"
    );
    let _ = writeln!(
        out,
        "`glowworm_protocol::freivalds::check` (μ = {}, λ = {}, F = {}), release build, {:.0} s. Counts \
         scaled by {scale}. Inputs uniform in [−1, 1) for the cheats; a fresh instance (inputs and \
         cheat) every {} tries, a fresh secret seed every try. \"Row's magnitude\": the RMS of the \
         correct values of that row of C. At k = 1 every cheat leaves at least one multiply-add \
         out or wrong (7/8 of one term is none of it; 1% of a tile's MACs is at least one).\n",
        freivalds::MU,
        freivalds::LAMBDA,
        freivalds::SAFETY,
        started.elapsed().as_secs_f64(),
        ((TRIES_PER_CELL as f64 * scale) as usize)
            .div_ceil(INSTANCES)
            .max(1),
    );
    let _ = writeln!(out, "## Cheat kind × k → share caught (goal: 100%)\n");
    header(&mut out, "cheat");
    for (cheat, row) in cheats.iter().zip(cells) {
        let _ = write!(out, "| {} |", cheat.label());
        for c in row {
            let share = 100.0 * c.caught as f64 / c.tries as f64;
            let mark = if c.caught == c.tries {
                ""
            } else {
                " **missed**"
            };
            let _ = write!(out, " {share:.2}% of {}{mark} |", c.tries);
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(
        out,
        "\n## Honest order × k → share rejected (goal: 0), element trials over five kinds of data\n"
    );
    header(&mut out, "order");
    let mut total = 0usize;
    let mut rejected = 0usize;
    for (order, row) in orders.iter().zip(honest) {
        let _ = write!(out, "| {} |", order.label());
        for c in row {
            total += c.elements;
            rejected += c.rejected_tiles;
            let _ = write!(
                out,
                " {} of {} ({} tiles) |",
                c.rejected_elements, c.elements, c.rejected_tiles
            );
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "\n{total} element trials, {rejected} tiles rejected (a rejected tile counts as one \
         rejected element).\n"
    );

    let _ = writeln!(
        out,
        "## Margin per k: smallest caught cheat residual / largest honest residual\n\nResidual: a \
         product's largest element error in units of u·sqrt(Σ S² + Σ t²). Honest: every order and \
         data kind above; \"random data\" leaves out constant 0.1, whose errors are systematic \
         (tier 2 simulates them).\n"
    );
    let _ = writeln!(
        out,
        "| k | smallest cheat residual (which) | largest honest residual | margin | largest honest, random data | margin, random data |"
    );
    let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (ki, k) in KS.iter().enumerate() {
        let (cheat_min, which) = cheats
            .iter()
            .zip(cells)
            .map(|(c, row)| (row[ki].min_residual, c.label()))
            .min_by(|x, y| x.0.total_cmp(&y.0))
            .expect("cheats");
        let honest_max = honest
            .iter()
            .map(|r| r[ki].max_residual)
            .fold(0f64, f64::max);
        let (random_max, random_from) = orders
            .iter()
            .zip(honest)
            .map(|(o, r)| (r[ki].max_residual_random_data, o.label()))
            .max_by(|x, y| x.0.0.total_cmp(&y.0.0))
            .map(|((r, data), order)| (r, format!("{order}, {data}")))
            .expect("orders");
        let _ = writeln!(
            out,
            "| {k} | {cheat_min:.3e} ({which}) | {honest_max:.2} | {:.1} | {random_max:.2} ({random_from}) | {:.1} |",
            cheat_min / honest_max,
            cheat_min / random_max
        );
    }

    let _ = writeln!(
        out,
        "\n## Tier 2's cost: share of rows recomputed, mean check time per tile (µs)\n"
    );
    header(&mut out, "data");
    for (data, row) in Data::ALL.iter().zip(costs) {
        let _ = write!(out, "| {} |", data.label());
        for c in row {
            let _ = write!(
                out,
                " {:.2}%, {:.0} µs |",
                100.0 * c.tier2_rows as f64 / c.rows.max(1) as f64,
                1e6 * c.seconds / c.tiles.max(1) as f64
            );
        }
        let _ = writeln!(out);
    }
    out
}
