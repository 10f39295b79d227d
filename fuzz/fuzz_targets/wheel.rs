//! The timing wheel (`tftp_proto::timers::Wheel`) against its model
//! (`tftp_proto::testing::WheelModel`, as its property test), on whole-millisecond
//! instants: deadlines near and far (beyond the wheel's reach, past, at the end of time), the
//! clock advanced by small and large steps. Checked: no panic; a key comes out at the first
//! `expired` whose `now` reaches its deadline (or, scheduled for a tick already expired, the
//! next tick), never before, by tick and then in scheduling order; `len` and `next_deadline`
//! agree with the model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tftp_proto::testing::WheelModel;
use tftp_proto::time::Millis;
use tftp_proto::timers::Wheel;

fuzz_target!(|data: &[u8]| {
    let Some((head, ops)) = data.split_at_checked(4) else {
        return;
    };
    let origin = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
    let mut wheel = Wheel::new(Millis(origin));
    let mut model = WheelModel::new(Millis(origin));
    let (mut now, mut next_key) = (origin, 0u32);
    for op in ops.chunks_exact(3) {
        let arg = u64::from(u16::from_le_bytes([op[1], op[2]]));
        let at = match op[0] % 6 {
            // A deadline from 1 s before `now` to 64 s after it.
            0 | 1 => (now + arg).saturating_sub(1_000),
            // Deadlines on a coarse grid, so that many share a tick.
            2 => origin + (arg % 128) * 100,
            // The end of time: never due.
            3 => u64::MAX - arg,
            kind => {
                now += if kind == 4 { arg % 4 } else { arg };
                let got: Vec<u32> = wheel.expired(Millis(now)).collect();
                assert_eq!(got, model.expired(Millis(now)), "expired at {now}");
                assert_eq!(wheel.len(), model.len());
                assert_eq!(wheel.next_deadline(), model.next_deadline());
                continue;
            }
        };
        wheel.schedule(Millis(at), next_key);
        model.schedule(Millis(at), next_key);
        next_key += 1;
        assert_eq!(wheel.len(), model.len());
        // A tick past the end of time is "never" (`None`), as for the model.
        assert_eq!(wheel.next_deadline(), model.next_deadline());
    }
});
