//! The generator's random numbers: splitmix64, good enough for synthetic data and
//! trivially seedable, plus the few distributions the workload draws from.

pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub(super) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller, one branch).
    pub(super) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub(super) fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    pub(super) fn weighted<T: Copy>(&mut self, table: &[(u32, T)]) -> T {
        let total: u32 = table.iter().map(|e| e.0).sum();
        let mut r = self.below(u64::from(total)) as u32;
        for &(w, v) in table {
            if r < w {
                return v;
            }
            r -= w;
        }
        table[table.len() - 1].1
    }

    /// Index into `items`, drawn by the weights `w` gives.
    pub(super) fn weighted_by<T>(&mut self, items: &[T], w: impl Fn(&T) -> u32) -> usize {
        let total: u32 = items.iter().map(&w).sum();
        let mut r = self.below(u64::from(total)) as u32;
        for (i, item) in items.iter().enumerate() {
            let wi = w(item);
            if r < wi {
                return i;
            }
            r -= wi;
        }
        items.len() - 1
    }

    pub(super) fn uuid(&mut self) -> Uuid {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hi = self.next_u64();
        let lo = self.next_u64();
        let hi = (hi & !0xF000) | 0x4000; // version 4
        let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
        let mut out = [0u8; 36];
        let mut nib = 0;
        for (i, slot) in out.iter_mut().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                *slot = b'-';
                continue;
            }
            let v = if nib < 16 {
                hi >> (60 - 4 * nib)
            } else {
                lo >> (60 - 4 * (nib - 16))
            };
            *slot = HEX[(v & 0xF) as usize];
            nib += 1;
        }
        out
    }
}

pub(super) type Uuid = [u8; 36];

// ---------------------------------------------------------------------------------
// Static vocabulary of the simulated service.
