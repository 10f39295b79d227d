//! The timing wheel (`tftp_proto::timers::Wheel`) against a model, on whole-millisecond
//! instants: deadlines near and far (beyond the wheel's reach, past, at the end of time), the
//! clock advanced by small and large steps. Checked: no panic; a key comes out at the first
//! `expired` whose `now` reaches its deadline (or, scheduled for a tick already expired, the
//! next tick), never before, by tick and then in scheduling order; `len` and `next_deadline`
//! agree with the model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tftp_proto::time::Millis;
use tftp_proto::timers::Wheel;

fuzz_target!(|data: &[u8]| {
    let Some((head, ops)) = data.split_at_checked(4) else {
        return;
    };
    let origin = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
    let mut wheel = Wheel::new(Millis(origin));
    // (tick, key) in scheduling order; the tick is relative to the origin, as the wheel's.
    let mut model: Vec<(u64, u32)> = Vec::new();
    let (mut now, mut cursor, mut next_key) = (origin, 0u64, 0u32);
    for op in ops.chunks_exact(3) {
        let arg = u64::from(u16::from_le_bytes([op[1], op[2]]));
        match op[0] % 6 {
            // A deadline from 1 s before `now` to 64 s after it.
            0 | 1 => schedule(&mut wheel, &mut model, (now + arg).saturating_sub(1_000), origin, cursor, &mut next_key),
            // Deadlines on a coarse grid, so that many share a tick.
            2 => schedule(&mut wheel, &mut model, origin + (arg % 128) * 100, origin, cursor, &mut next_key),
            // The end of time: never due.
            3 => schedule(&mut wheel, &mut model, u64::MAX - arg, origin, cursor, &mut next_key),
            _ => {
                now += if op[0] % 6 == 4 { arg % 4 } else { arg };
                let now_tick = now - origin;
                let got: Vec<u32> = wheel.expired(Millis(now)).collect();
                let mut want: Vec<(u64, u32)> = Vec::new();
                if now_tick >= cursor {
                    want = model.iter().copied().filter(|e| e.0 <= now_tick).collect();
                    model.retain(|e| e.0 > now_tick);
                    cursor = now_tick + 1;
                }
                want.sort_by_key(|e| e.0);
                let want: Vec<u32> = want.into_iter().map(|e| e.1).collect();
                assert_eq!(got, want, "expired at {now}");
            }
        }
        assert_eq!(wheel.len(), model.len());
        // A tick past the end of time is "never" (`None`), as for the model.
        let first = model.iter().map(|e| e.0).min();
        let want = first.and_then(|t| origin.checked_add(t));
        assert_eq!(wheel.next_deadline(), want.map(Millis));
    }
});

fn schedule(
    wheel: &mut Wheel<Millis, u32>,
    model: &mut Vec<(u64, u32)>,
    at: u64,
    origin: u64,
    cursor: u64,
    next_key: &mut u32,
) {
    wheel.schedule(Millis(at), *next_key);
    model.push((at.saturating_sub(origin).max(cursor), *next_key));
    *next_key += 1;
}
