//! The simulation scenarios: reads, writes, the window, keep-alive, asynchronous events,
//! task management and recovery.

use std::time::Duration;

use super::*;
use crate::session::ConnectionFailure;
use crate::wire::{
    AsyncEvent, AsyncMessage, DataOut, LogoutResponse, Reject, RejectReason, TaskMgmtResponse,
    TmFunction, TmResponse,
};

fn data_outs(pdus: &[Pdu]) -> Vec<DataOut> {
    pdus.iter()
        .filter_map(|p| match p {
            Pdu::DataOut(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn read_in_three_data_ins_with_status_in_the_last() {
    let mut sim = Sim::default();
    let id = sim.read(3000);
    let cmd = sim.commands().remove(0);
    assert!(cmd.read && cmd.final_ && !cmd.immediate);
    assert_eq!(cmd.expected_data_transfer_length, 3000);
    let data = pattern(3000, 1);
    for (sn, chunk) in data.chunks(1024).enumerate() {
        let last = sn == 2;
        let pdu = sim
            .target
            .data_in(cmd.itt, sn as u32, sn as u32 * 1024, chunk, last);
        sim.feed(pdu);
    }
    let done = only_ok(sim.completions());
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].0, id);
    assert_eq!(&done[0].1.data[..], &data[..]);
    assert!(sim.events().is_empty());
}

/// Feeds a bad Data-In sequence after a good first PDU; the session must drop the
/// connection, never deliver data, and re-issue the read on the next connection.
fn bad_data_in(second: impl Fn(&mut Target, u32) -> Pdu) {
    let mut sim = Sim::default();
    let id = sim.read(2048);
    let itt = sim.commands()[0].itt;
    let data = pattern(2048, 2);
    let first = sim.target.data_in(itt, 0, 0, &data[..1024], false);
    sim.feed(first);
    let bad = second(&mut sim.target, itt);
    sim.feed(bad);
    assert!(sim.completions().is_empty(), "no data delivered");
    let events = sim.events();
    assert!(
        matches!(
            events[..],
            [Event::Reconnect {
                reason: ConnectionFailure::PeerMisbehaved(_),
                ..
            }]
        ),
        "{events:?}"
    );
    assert!(sim.sent().is_empty(), "nothing sent while disconnected");
    sim.reconnect();
    let again = sim.commands();
    assert_eq!(again.len(), 1, "the read is re-issued");
    assert_eq!(again[0].cmd_sn, 77);
    let pdu = sim.target.data_in(again[0].itt, 0, 0, &data, true);
    sim.feed(pdu);
    let done = only_ok(sim.completions());
    assert_eq!(done[0].0, id);
    assert_eq!(&done[0].1.data[..], &data[..]);
}

#[test]
fn data_in_out_of_datasn_order_is_a_protocol_error() {
    bad_data_in(|t, itt| t.data_in(itt, 2, 1024, &[0xee; 1024], true));
}

#[test]
fn duplicated_data_in_is_a_protocol_error() {
    bad_data_in(|t, itt| t.data_in(itt, 0, 0, &[0xee; 1024], false));
}

#[test]
fn overlapping_data_in_is_a_protocol_error() {
    bad_data_in(|t, itt| t.data_in(itt, 1, 512, &[0xee; 1024], true));
}

#[test]
fn data_in_past_the_expected_length_is_a_protocol_error() {
    bad_data_in(|t, itt| t.data_in(itt, 1, 1024, &[0xee; 2048], true));
}

#[test]
fn status_without_final_bit_is_a_protocol_error() {
    bad_data_in(|t, itt| {
        let mut pdu = t.data_in(itt, 1, 1024, &[0xee; 1024], true);
        if let Pdu::DataIn(d) = &mut pdu {
            d.final_ = false;
        }
        pdu
    });
}

#[test]
fn short_read_without_underflow_reports_what_arrived() {
    // Some targets answer SPC commands with less than the allocation length and no residual;
    // the command completes with the bytes that came and the shortfall as underflow (the
    // disk layer refuses short block reads).
    let mut sim = Sim::default();
    sim.read(2048);
    let itt = sim.commands()[0].itt;
    let pdu = sim.target.data_in(itt, 0, 0, &[1; 1024], true);
    sim.feed(pdu);
    let done = only_ok(sim.completions());
    assert_eq!(done[0].1.data.len(), 1024);
    assert_eq!(done[0].1.underflow, Some(1024));
    assert!(sim.events().is_empty());
}

#[test]
fn underflow_residual_is_reported() {
    let mut sim = Sim::default();
    sim.read(255);
    let itt = sim.commands()[0].itt;
    let mut pdu = sim.target.data_in(itt, 0, 0, &[7; 36], true);
    if let Pdu::DataIn(d) = &mut pdu {
        d.underflow = true;
        d.residual = 219;
    }
    sim.feed(pdu);
    let done = only_ok(sim.completions());
    assert_eq!(done[0].1.data.len(), 36);
    assert_eq!(done[0].1.underflow, Some(219));
}

#[test]
fn stat_sn_gap_drops_the_connection() {
    let mut sim = Sim::default();
    sim.read(512);
    let itt = sim.commands()[0].itt;
    sim.target.next_stat_sn(); // a status the initiator never saw
    let pdu = sim.target.response(itt, ScsiStatus::GOOD);
    sim.feed(pdu);
    assert!(sim.completions().is_empty());
    let events = sim.events();
    assert!(matches!(
        events[..],
        [Event::Reconnect { reason: ConnectionFailure::PeerMisbehaved(m), .. }] if m.contains("gap")
    ));
}

#[test]
fn write_with_immediate_and_unsolicited_data_then_r2t() {
    // Target MaxRecvDataSegmentLength 4096, ImmediateData=Yes, InitialR2T=No,
    // FirstBurstLength 65536: 4096 immediate, 61440 unsolicited, the rest by R2T.
    let mut sim = Sim::new(SessionConfig::default(), negotiated(4096, true, false));
    let data = pattern(100_000, 3);
    let id = sim.write(&data);
    let pdus = sim.sent();
    let Pdu::ScsiCommand(cmd) = &pdus[0] else {
        panic!("command first")
    };
    sim.target.accept(cmd);
    assert!(cmd.write && !cmd.final_, "unsolicited Data-Out follows");
    assert_eq!(&cmd.data[..], &data[..4096]);
    let unsolicited = data_outs(&pdus);
    assert_eq!(unsolicited.len(), 15);
    let mut offset = 4096;
    for (sn, d) in unsolicited.iter().enumerate() {
        assert_eq!(
            (d.ttt, d.data_sn, d.buffer_offset),
            (RESERVED_TAG, sn as u32, offset)
        );
        assert!(d.data.len() <= 4096);
        assert_eq!(
            &d.data[..],
            &data[offset as usize..offset as usize + d.data.len()]
        );
        assert_eq!(d.final_, sn == 14);
        offset += d.data.len() as u32;
    }
    assert_eq!(offset, 65536);
    // Two R2Ts for the rest, the second one split over several Data-Out PDUs.
    let r1 = sim.target.r2t(cmd.itt, 0, 65536, 10_000);
    let r2 = sim.target.r2t(cmd.itt, 1, 75_536, 24_464);
    sim.feed(r1);
    sim.feed(r2);
    let solicited = data_outs(&sim.sent());
    let first: Vec<_> = solicited.iter().filter(|d| d.ttt == 0x1000).collect();
    let second: Vec<_> = solicited.iter().filter(|d| d.ttt == 0x1001).collect();
    assert_eq!(first.len(), 3);
    assert_eq!(second.len(), 6);
    for seq in [&first, &second] {
        for (sn, d) in seq.iter().enumerate() {
            assert_eq!(d.data_sn, sn as u32, "DataSN restarts per R2T");
            assert_eq!(d.final_, sn == seq.len() - 1);
            let o = d.buffer_offset as usize;
            assert_eq!(&d.data[..], &data[o..o + d.data.len()]);
        }
    }
    let total: usize = solicited.iter().map(|d| d.data.len()).sum();
    assert_eq!(total, 100_000 - 65536);
    let pdu = sim.target.response(cmd.itt, ScsiStatus::GOOD);
    sim.feed(pdu);
    assert_eq!(only_ok(sim.completions())[0].0, id);
}

#[test]
fn write_with_initial_r2t_and_no_immediate_data_waits_for_r2t() {
    let mut sim = Sim::new(SessionConfig::default(), negotiated(8192, false, true));
    sim.write(&pattern(16384, 4));
    let pdus = sim.sent();
    assert_eq!(pdus.len(), 1);
    let Pdu::ScsiCommand(cmd) = &pdus[0] else {
        panic!()
    };
    assert!(cmd.final_ && cmd.data.is_empty());
}

#[test]
fn bad_r2ts_are_protocol_errors() {
    for (sn, offset, len) in [(1, 0, 512), (0, 16000, 1024), (0, 0, 0), (0, 0, 1 << 20)] {
        let mut sim = Sim::new(SessionConfig::default(), negotiated(8192, false, true));
        sim.write(&pattern(16384, 4));
        let itt = sim.commands()[0].itt;
        let r = sim.target.r2t(itt, sn, offset, len);
        sim.feed(r);
        assert!(data_outs(&sim.sent()).is_empty());
        assert!(
            matches!(sim.events()[..], [Event::Reconnect { .. }]),
            "R2T {sn} {offset} {len}"
        );
    }
}

#[test]
fn window_closes_and_reopens() {
    let mut sim = Sim::default();
    sim.target.window = 0; // closed: MaxCmdSN = ExpCmdSN - 1
    sim.reconnect();
    for _ in 0..5 {
        sim.read(512);
    }
    assert!(
        sim.commands().is_empty(),
        "nothing sent into a closed window"
    );
    sim.target.window = 2;
    let update = sim.target.window_update();
    sim.feed(update);
    let cmds = sim.commands();
    assert_eq!(cmds.len(), 2);
    for c in &cmds {
        assert!(crate::wire::Sn(c.cmd_sn).le(crate::wire::Sn(sim.target.max_cmd_sn())));
    }
    // Completing one command opens room for exactly one more.
    let pdu = sim.target.data_in(cmds[0].itt, 0, 0, &[0; 512], true);
    // ExpCmdSN already counts both; the window of 2 now admits two more.
    sim.feed(pdu);
    assert_eq!(sim.commands().len(), 2);
    assert_eq!(sim.session.outstanding(), 4);
}

#[test]
fn queue_depth_bounds_commands_in_flight() {
    let config = SessionConfig {
        queue_depth: 3,
        ..SessionConfig::default()
    };
    let mut sim = Sim::new(config, negotiated(8192, true, false));
    for _ in 0..10 {
        sim.read(512);
    }
    let cmds = sim.commands();
    assert_eq!(cmds.len(), 3);
    let itts: std::collections::HashSet<u32> = cmds.iter().map(|c| c.itt).collect();
    assert_eq!(itts.len(), 3, "distinct ITTs in flight");
    let pdu = sim.target.data_in(cmds[1].itt, 0, 0, &[0; 512], true);
    sim.feed(pdu);
    let more = sim.commands();
    assert_eq!(more.len(), 1);
    assert!(!itts.contains(&more[0].itt) || more[0].itt == cmds[1].itt);
    assert_ne!(more[0].itt, cmds[0].itt);
    assert_ne!(more[0].itt, cmds[2].itt);
}

#[test]
fn target_nop_in_is_answered_at_once() {
    let mut sim = Sim::default();
    let ping = Pdu::NopIn(NopIn {
        lun: Lun::from_number(1),
        itt: RESERVED_TAG,
        ttt: 0x55,
        stat_sn: sim.target.stat_sn,
        exp_cmd_sn: 1,
        max_cmd_sn: 32,
        data: Bytes::from_static(b"hi"),
    });
    sim.feed(ping);
    let sent = sim.sent();
    let [Pdu::NopOut(out)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(
        (out.itt, out.ttt, out.immediate),
        (RESERVED_TAG, 0x55, true)
    );
    assert_eq!(&out.data[..], b"hi");
    assert_eq!(out.lun, Lun::from_number(1));
}

#[test]
fn idle_connection_is_pinged_and_declared_dead_without_answer() {
    let mut sim = Sim::default();
    sim.advance(Duration::from_secs(4));
    assert!(sim.sent().is_empty());
    sim.advance(Duration::from_secs(1));
    let sent = sim.sent();
    let [Pdu::NopOut(ping)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_ne!(ping.itt, RESERVED_TAG);
    // Answered: the clock starts over.
    let answer = Pdu::NopIn(NopIn {
        itt: ping.itt,
        ttt: RESERVED_TAG,
        stat_sn: sim.target.next_stat_sn(),
        exp_cmd_sn: 1,
        max_cmd_sn: 32,
        ..NopIn::default()
    });
    sim.feed(answer);
    sim.advance(Duration::from_secs(5));
    assert_eq!(sim.sent().len(), 1, "second ping");
    sim.advance(Duration::from_secs(5));
    let events = sim.events();
    assert_eq!(
        events,
        [Event::Reconnect {
            reason: ConnectionFailure::PingTimeout,
            delay: Duration::ZERO
        }]
    );
}

#[test]
fn async_logout_request_drains_logs_out_and_reconnects() {
    let mut sim = Sim::default();
    sim.read(512);
    let itt = sim.commands()[0].itt;
    let msg = Pdu::AsyncMessage(AsyncMessage {
        stat_sn: sim.target.next_stat_sn(),
        exp_cmd_sn: sim.target.exp_cmd_sn,
        max_cmd_sn: sim.target.max_cmd_sn(),
        event: AsyncEvent::LOGOUT_REQUEST,
        parameter3: 10,
        ..AsyncMessage::default()
    });
    sim.feed(msg);
    let queued = sim.read(512);
    assert!(sim.commands().is_empty(), "no new commands while draining");
    let pdu = sim.target.data_in(itt, 0, 0, &[0; 512], true);
    sim.feed(pdu);
    assert_eq!(sim.completions().len(), 1);
    let sent = sim.sent();
    let [Pdu::LogoutRequest(req)] = &sent[..] else {
        panic!("{sent:?}")
    };
    let resp = Pdu::LogoutResponse(LogoutResponse {
        itt: req.itt,
        stat_sn: sim.target.next_stat_sn(),
        exp_cmd_sn: sim.target.exp_cmd_sn,
        max_cmd_sn: sim.target.max_cmd_sn(),
        time2wait: 1,
        ..LogoutResponse::default()
    });
    sim.feed(resp);
    assert_eq!(
        sim.events(),
        [Event::Reconnect {
            reason: ConnectionFailure::TargetLogout,
            delay: Duration::from_secs(1)
        }]
    );
    sim.reconnect();
    let cmds = sim.commands();
    assert_eq!(cmds.len(), 1);
    let pdu = sim.target.data_in(cmds[0].itt, 0, 0, &[9; 512], true);
    sim.feed(pdu);
    assert_eq!(only_ok(sim.completions())[0].0, queued);
}

#[test]
fn lost_response_triggers_abort_task_and_reissue() {
    let mut sim = Sim::default();
    let id = sim.read(512);
    let cmd = sim.commands().remove(0);
    // Keep the connection busy so pings do not interfere; the response never comes.
    sim.advance(Duration::from_secs(29));
    sim.sent();
    let answer_pings = |sim: &mut Sim| {
        for p in sim.sent() {
            if let Pdu::NopOut(n) = p {
                let a = Pdu::NopIn(NopIn {
                    itt: n.itt,
                    ttt: RESERVED_TAG,
                    stat_sn: sim.target.next_stat_sn(),
                    exp_cmd_sn: sim.target.exp_cmd_sn,
                    max_cmd_sn: sim.target.max_cmd_sn(),
                    ..NopIn::default()
                });
                sim.feed(a);
            }
        }
    };
    answer_pings(&mut sim);
    sim.advance(Duration::from_secs(1));
    let sent = sim.sent();
    let abort = sent
        .iter()
        .find_map(|p| match p {
            Pdu::TaskMgmtRequest(t) => Some(t.clone()),
            _ => None,
        })
        .expect("ABORT TASK sent");
    assert_eq!(abort.function, TmFunction::ABORT_TASK);
    assert_eq!(
        (abort.referenced_task_tag, abort.ref_cmd_sn),
        (cmd.itt, cmd.cmd_sn)
    );
    assert!(abort.immediate);
    let resp = Pdu::TaskMgmtResponse(TaskMgmtResponse {
        response: TmResponse::FUNCTION_COMPLETE,
        itt: abort.itt,
        stat_sn: sim.target.next_stat_sn(),
        exp_cmd_sn: sim.target.exp_cmd_sn,
        max_cmd_sn: sim.target.max_cmd_sn(),
    });
    sim.feed(resp);
    assert!(sim.commands().is_empty(), "not re-issued at once");
    sim.run_to_timeout();
    let again = sim.commands();
    assert_eq!(again.len(), 1, "re-issued after the abort's pause");
    let pdu = sim.target.data_in(again[0].itt, 0, 0, &[5; 512], true);
    sim.feed(pdu);
    assert_eq!(only_ok(sim.completions())[0].0, id);
}

#[test]
fn unanswered_abort_escalates_to_lun_reset_then_new_session() {
    let config = SessionConfig {
        noop_interval: Duration::ZERO,
        ..SessionConfig::default()
    };
    let mut sim = Sim::new(config, negotiated(8192, true, false));
    sim.read(512);
    sim.commands();
    sim.run_to_timeout();
    let functions = |pdus: Vec<Pdu>| -> Vec<TmFunction> {
        pdus.into_iter()
            .filter_map(|p| match p {
                Pdu::TaskMgmtRequest(t) => Some(t.function),
                _ => None,
            })
            .collect()
    };
    assert_eq!(functions(sim.sent()), [TmFunction::ABORT_TASK]);
    sim.run_to_timeout();
    assert_eq!(functions(sim.sent()), [TmFunction::LOGICAL_UNIT_RESET]);
    sim.run_to_timeout();
    let events = sim.events();
    assert!(matches!(
        events[..],
        [Event::Reconnect {
            reason: ConnectionFailure::TaskManagement(_),
            ..
        }]
    ));
    sim.reconnect();
    assert_eq!(sim.commands().len(), 1, "re-issued on the new session");
}

#[test]
fn corrupted_data_digest_reissues_and_never_returns_bad_bytes() {
    let mut sim = Sim::default();
    let id = sim.read(1024);
    let itt = sim.commands()[0].itt;
    let good = pattern(1024, 6);
    // The driver lands the segment, then finds the digest wrong and reports the loss.
    let Pdu::DataIn(mut header) = sim.target.data_in(itt, 0, 0, &good, true) else {
        panic!()
    };
    header.data = Bytes::new();
    let landing = sim.session.begin_data_in(header, 1024, sim.now).unwrap();
    sim.session.landing_buffer(&landing).fill(0xbd);
    let err = crate::wire::DecodeError::DataDigest {
        itt,
        expected: 1,
        actual: 2,
    };
    sim.session
        .handle_connection_lost(ConnectionFailure::Decode(err), sim.now);
    assert!(sim.completions().is_empty());
    assert!(
        matches!(sim.events()[..], [Event::Reconnect { delay, .. }] if delay == Duration::from_secs(2))
    );
    sim.reconnect();
    let again = sim.commands();
    let pdu = sim.target.data_in(again[0].itt, 0, 0, &good, true);
    sim.feed(pdu);
    let done = only_ok(sim.completions());
    assert_eq!(done[0].0, id);
    assert_eq!(&done[0].1.data[..], &good[..]);
}

#[test]
fn replacement_timeout_fails_commands_only_after_it_expires() {
    let mut sim = Sim::default();
    sim.read(512);
    sim.commands();
    sim.session
        .handle_connection_lost(ConnectionFailure::Closed, sim.now);
    sim.events();
    for _ in 0..14 {
        sim.advance(Duration::from_secs(1));
        sim.session.handle_login_failed(sim.now);
    }
    assert!(sim.completions().is_empty());
    sim.advance(Duration::from_secs(1));
    let done = sim.completions();
    assert!(matches!(
        done[..],
        [(_, Err(TaskError::ReplacementTimeout))]
    ));
    sim.read(512);
    assert!(matches!(
        sim.completions()[..],
        [(_, Err(TaskError::ReplacementTimeout))]
    ));
    sim.reconnect();
    sim.read(512);
    assert_eq!(
        sim.commands().len(),
        1,
        "a new session serves commands again"
    );
}

#[test]
fn reject_of_a_command_is_a_clear_error() {
    let mut sim = Sim::default();
    sim.read(512);
    let cmd = sim.commands().remove(0);
    let (bhs, _) = Pdu::ScsiCommand(cmd).encoded_header();
    let reject = Pdu::Reject(Reject {
        reason: RejectReason::COMMAND_NOT_SUPPORTED,
        stat_sn: sim.target.next_stat_sn(),
        exp_cmd_sn: sim.target.exp_cmd_sn,
        max_cmd_sn: sim.target.max_cmd_sn(),
        data_sn_or_r2t_sn: 0,
        data: Bytes::copy_from_slice(&bhs),
    });
    sim.feed(reject);
    let done = sim.completions();
    assert!(matches!(
        done[..],
        [(
            _,
            Err(TaskError::Rejected {
                reason: RejectReason::COMMAND_NOT_SUPPORTED
            })
        )]
    ));
}

#[test]
fn orderly_close_logs_out() {
    let mut sim = Sim::default();
    sim.session.close(sim.now);
    let sent = sim.sent();
    let [Pdu::LogoutRequest(req)] = &sent[..] else {
        panic!("{sent:?}")
    };
    let resp = Pdu::LogoutResponse(LogoutResponse {
        itt: req.itt,
        stat_sn: sim.target.next_stat_sn(),
        ..LogoutResponse::default()
    });
    sim.feed(resp);
    assert_eq!(sim.events(), [Event::LoggedOut]);
    assert!(sim.session.is_closed());
}
