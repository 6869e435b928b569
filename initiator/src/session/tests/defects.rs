//! One simulation per protocol defect found in review: each failed before its fix.

use std::time::Duration;

use super::*;
use crate::scsi::RetryPolicy;
use crate::session::{ConnectionFailure, TaskManagement};
use crate::wire::{DataOut, LogoutRequest, TaskMgmtRequest, TextRequest, TmFunction};

fn scsi_commands(pdu: Pdu) -> Option<ScsiCommand> {
    match pdu {
        Pdu::ScsiCommand(c) => Some(c),
        _ => None,
    }
}

fn tmf_requests(pdu: Pdu) -> Option<TaskMgmtRequest> {
    match pdu {
        Pdu::TaskMgmtRequest(t) => Some(t),
        _ => None,
    }
}

fn logout_requests(pdu: Pdu) -> Option<LogoutRequest> {
    match pdu {
        Pdu::LogoutRequest(l) => Some(l),
        _ => None,
    }
}

fn text_requests(pdu: Pdu) -> Option<TextRequest> {
    match pdu {
        Pdu::TextRequest(t) => Some(t),
        _ => None,
    }
}

/// RFC 7143 §11.17.3: a Reject advances StatSN. The status after it carries the next number
/// and must not look like a gap.
#[test]
fn a_reject_advances_stat_sn() {
    let mut sim = Sim::default();
    let id = sim.read(512);
    let cmd = sim.commands().remove(0);
    let nop = Pdu::NopOut(crate::wire::NopOut::default());
    let reject = sim.target.reject(RejectReason::PROTOCOL_ERROR, &nop);
    sim.feed(reject);
    let pdu = sim.target.data_in(cmd.itt, 0, 0, &[3; 512], true);
    sim.feed(pdu);
    assert!(sim.events().is_empty(), "no StatSN gap");
    assert_eq!(only_ok(sim.completions())[0].0, id);
}

/// §11.17.1: a rejected Data-Out ends nothing — the target answers the command itself.
#[test]
fn a_rejected_data_out_does_not_complete_its_command() {
    let mut sim = Sim::new(SessionConfig::default(), negotiated(512, false, false));
    let id = sim.write(&pattern(1024, 4));
    let sent = sim.sent();
    let cmd = sent.iter().find_map(|p| scsi_commands(p.clone())).unwrap();
    sim.target.accept(&cmd);
    let data_out = sent
        .iter()
        .find(|p| matches!(p, Pdu::DataOut(_)))
        .cloned()
        .unwrap();
    let reject = sim
        .target
        .reject(RejectReason::INVALID_PDU_FIELD, &data_out);
    sim.feed(reject);
    assert!(sim.completions().is_empty(), "the command still runs");
    let answer = sim.target.check_condition(cmd.itt, 0x03, 0x11, 0x00);
    sim.feed(answer);
    let done = sim.completions();
    assert_eq!(done[0].0, id);
    let response = done[0].1.as_ref().unwrap();
    assert_eq!(response.status, ScsiStatus::CHECK_CONDITION);
}

/// A Reject "waiting for logout" puts the command back (it runs on the next connection)
/// and the session logs out.
#[test]
fn a_command_rejected_waiting_for_logout_runs_again() {
    let mut sim = Sim::default();
    let id = sim.read(512);
    let cmd = sim.commands().remove(0);
    let reject = sim
        .target
        .reject(RejectReason::WAITING_FOR_LOGOUT, &Pdu::ScsiCommand(cmd));
    sim.feed(reject);
    assert!(sim.completions().is_empty());
    let logout = sim.sent_of(logout_requests);
    assert_eq!(logout.len(), 1, "nothing runs: the logout goes out");
    let resp = Pdu::LogoutResponse(crate::wire::LogoutResponse {
        itt: logout[0].itt,
        stat_sn: sim.target.next_stat_sn(),
        ..Default::default()
    });
    sim.feed(resp);
    assert!(matches!(sim.events()[..], [Event::Reconnect { .. }]));
    sim.reconnect();
    sim.run_to_timeout();
    let again = sim.commands();
    assert_eq!(again.len(), 1, "re-issued on the new connection");
    let pdu = sim.target.data_in(again[0].itt, 0, 0, &[1; 512], true);
    sim.feed(pdu);
    assert_eq!(only_ok(sim.completions())[0].0, id);
}

/// A target that answers TASK ABORTED every time gets the command a bounded number of times,
/// with growing pauses, then the caller gets an error.
#[test]
fn task_aborted_forever_is_bounded_with_backoff() {
    let mut sim = Sim::default();
    let id = sim.read(512);
    let mut pauses = Vec::new();
    let mut issues = 0;
    let mut done = Vec::new();
    while done.is_empty() && issues <= 20 {
        let sent = sim.exchange();
        for cmd in sent.into_iter().filter_map(scsi_commands) {
            issues += 1;
            let aborted = sim.target.response(cmd.itt, ScsiStatus::TASK_ABORTED);
            sim.feed(aborted);
            assert!(
                sim.sent_of(scsi_commands).is_empty(),
                "never re-sent at once"
            );
            let at = sim.session.poll_timeout().expect("a pause is armed");
            pauses.push(at - sim.now);
        }
        sim.run_to_timeout();
        done.extend(sim.completions());
    }
    assert_eq!(issues, 9, "first issue plus max_reissues (8)");
    let pauses = &pauses[..8];
    assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
    assert_eq!(pauses[0], Duration::from_millis(100));
    assert_eq!(done[0].0, id);
    assert!(matches!(done[0].1, Err(TaskError::TooManyRetries(8))));
}

/// A hung LU: every issue times out and its ABORT TASK succeeds. The command is not
/// aborted and re-issued forever.
#[test]
fn a_hung_lu_is_given_up_after_the_reissue_bound() {
    let config = SessionConfig {
        max_reissues: 3,
        ..SessionConfig::default()
    };
    let mut sim = Sim::new(config, negotiated(8192, true, false));
    let id = sim.read(512);
    let mut aborts = 0;
    let mut done = Vec::new();
    for _ in 0..200 {
        for t in sim.exchange().into_iter().filter_map(tmf_requests) {
            aborts += 1;
            let answer = sim
                .target
                .tmf_response(t.itt, TmResponse::FUNCTION_COMPLETE);
            sim.feed(answer);
        }
        done.extend(sim.completions());
        if !done.is_empty() {
            break;
        }
        sim.run_to_timeout();
    }
    assert_eq!(aborts, 4, "one abort per issue");
    assert_eq!(done[0].0, id);
    assert!(matches!(done[0].1, Err(TaskError::TooManyRetries(3))));
}

/// `close()` while a target-requested logout is out: its answer ends the session for good.
#[test]
fn close_during_a_target_requested_logout_ends_the_session() {
    let mut sim = Sim::default();
    let msg = sim.target.async_message(AsyncEvent::LOGOUT_REQUEST, 5);
    sim.feed(msg);
    let logout = sim.sent_of(logout_requests);
    assert_eq!(logout.len(), 1);
    sim.session.close(sim.now);
    let resp = Pdu::LogoutResponse(crate::wire::LogoutResponse {
        itt: logout[0].itt,
        stat_sn: sim.target.next_stat_sn(),
        ..Default::default()
    });
    sim.feed(resp);
    assert_eq!(sim.events(), [Event::LoggedOut]);
    assert!(sim.session.is_closed());
}

/// `close()` while draining for a target-requested logout, with a command that never ends:
/// the close deadline sends the logout, and its deadline ends the session.
#[test]
fn close_while_draining_is_bounded() {
    let mut sim = Sim::default();
    let id = sim.read(512);
    sim.commands();
    let msg = sim.target.async_message(AsyncEvent::LOGOUT_REQUEST, 3600);
    sim.feed(msg);
    sim.session.close(sim.now);
    let start = sim.now;
    for _ in 0..100 {
        if sim.session.is_closed() {
            break;
        }
        sim.run_to_timeout();
        // The target answers pings and task management, but never the command.
        for t in sim.exchange().into_iter().filter_map(tmf_requests) {
            let answer = sim
                .target
                .tmf_response(t.itt, TmResponse::FUNCTION_COMPLETE);
            sim.feed(answer);
        }
    }
    assert!(sim.session.is_closed());
    assert!(
        sim.now - start <= Duration::from_secs(60),
        "{:?}",
        sim.now - start
    );
    let done = sim.completions();
    assert!(matches!(done[..], [(i, Err(TaskError::SessionClosed))] if i == id));
    assert_eq!(sim.events().last(), Some(&Event::LoggedOut));
}

/// §11.9.1: AsyncEvent 4 is answered with a Text Request; a declared
/// MaxRecvDataSegmentLength is taken.
#[test]
fn a_negotiation_request_is_answered_with_a_text_request() {
    let mut sim = Sim::new(SessionConfig::default(), negotiated(8192, true, false));
    let msg = sim
        .target
        .async_message(AsyncEvent::NEGOTIATION_REQUEST, 10);
    sim.feed(msg);
    let texts = sim.sent_of(text_requests);
    assert_eq!(texts.len(), 1, "a Text Request answers the event");
    assert!(texts[0].data.is_empty() && texts[0].final_ && texts[0].immediate);
    let answer = sim.target.text_response(
        texts[0].itt,
        b"MaxRecvDataSegmentLength=4096\0",
        true,
        false,
        RESERVED_TAG,
    );
    sim.feed(answer);
    assert!(sim.events().is_empty());
    // Writes now go out in segments of the new size.
    sim.write(&pattern(8192, 1));
    let sent = sim.sent();
    let immediate = sent.iter().find_map(|p| scsi_commands(p.clone())).unwrap();
    assert_eq!(immediate.data.len(), 4096);
}

/// A renegotiation that offers a key needing an answer: the session logs out and reconnects
/// (the other answer §11.9.1 allows) rather than ignoring the target.
#[test]
fn a_renegotiation_we_cannot_honour_logs_out() {
    let mut sim = Sim::default();
    let msg = sim
        .target
        .async_message(AsyncEvent::NEGOTIATION_REQUEST, 10);
    sim.feed(msg);
    let texts = sim.sent_of(text_requests);
    let answer = sim.target.text_response(
        texts[0].itt,
        b"MaxBurstLength=4096\0",
        true,
        false,
        RESERVED_TAG,
    );
    sim.feed(answer);
    assert_eq!(sim.sent_of(logout_requests).len(), 1);
}

/// After a LUN RESET only the commands it aborted run again, not one sent after it.
#[test]
fn a_lun_reset_reissues_only_what_it_aborted() {
    let config = SessionConfig {
        noop_interval: Duration::ZERO,
        ..SessionConfig::default()
    };
    let mut sim = Sim::new(config, negotiated(8192, true, false));
    let first = sim.read(512);
    let old = sim.commands().remove(0);
    sim.run_to_timeout(); // command timeout: ABORT TASK
    let abort = sim.sent_of(tmf_requests).remove(0);
    sim.run_to_timeout(); // the abort times out: LUN RESET
    let reset = sim.sent_of(tmf_requests).remove(0);
    assert_eq!(reset.function, TmFunction::LOGICAL_UNIT_RESET);
    assert_ne!(abort.itt, reset.itt);
    let later = sim.read(512);
    let new = sim.commands().remove(0);
    let answer = sim
        .target
        .tmf_response(reset.itt, TmResponse::FUNCTION_COMPLETE);
    sim.feed(answer);
    sim.run_to_timeout();
    let again = sim.commands();
    assert_eq!(again.len(), 1, "only the aborted command: {again:?}");
    assert_ne!(again[0].itt, new.itt);
    let a = sim.target.data_in(again[0].itt, 0, 0, &[1; 512], true);
    let b = sim.target.data_in(new.itt, 0, 0, &[2; 512], true);
    sim.feed(a);
    sim.feed(b);
    let mut done: Vec<TaskId> = only_ok(sim.completions())
        .into_iter()
        .map(|d| d.0)
        .collect();
    done.sort();
    assert_eq!(done, [first, later]);
    let _ = old;
}

/// §11.7.4: GOOD, CONDITION MET and INTERMEDIATE CONDITION MET may come with the S bit.
#[test]
fn condition_met_statuses_are_valid_in_data_in() {
    for status in [
        ScsiStatus::GOOD,
        ScsiStatus::CONDITION_MET,
        ScsiStatus::INTERMEDIATE_CONDITION_MET,
    ] {
        let mut sim = Sim::default();
        sim.read(512);
        let cmd = sim.commands().remove(0);
        let mut pdu = sim.target.data_in(cmd.itt, 0, 0, &[1; 512], true);
        if let Pdu::DataIn(d) = &mut pdu {
            d.status = status;
        }
        sim.feed(pdu);
        assert!(sim.events().is_empty(), "{status:?}");
        assert_eq!(only_ok(sim.completions())[0].1.status, status);
    }
}

/// A flush that meets a power-on/reset unit attention is not retried into a success; other
/// commands retry it transparently.
#[test]
fn a_flush_meeting_a_reset_reports_it() {
    let mut sim = Sim::default();
    let sync = Command::new(Lun::from_number(1), [0x91; 16], Transfer::None)
        .with_retry(RetryPolicy::FLUSH);
    sim.session.submit(sync, sim.now).unwrap();
    let cmd = sim.commands().remove(0);
    let ua = sim.target.check_condition(cmd.itt, 0x06, 0x29, 0x00);
    sim.feed(ua);
    let done = only_ok(sim.completions());
    assert_eq!(done[0].1.status, ScsiStatus::CHECK_CONDITION);
    assert!(sim.commands().is_empty());

    sim.read(512);
    let cmd = sim.commands().remove(0);
    let ua = sim.target.check_condition(cmd.itt, 0x06, 0x29, 0x00);
    sim.feed(ua);
    let again = sim.commands();
    assert_eq!(again.len(), 1, "a read is retried at once");
    let pdu = sim.target.data_in(again[0].itt, 0, 0, &[1; 512], true);
    sim.feed(pdu);
    let done = only_ok(sim.completions());
    assert_eq!(done[0].1.status, ScsiStatus::GOOD);
    assert_eq!(done[0].1.unit_attentions.len(), 1);
}

/// BUSY and TASK SET FULL are retried after a pause, a bounded number of times.
#[test]
fn busy_is_retried_after_a_pause() {
    let mut sim = Sim::default();
    let id = sim.read(512);
    let cmd = sim.commands().remove(0);
    let busy = sim.target.response(cmd.itt, ScsiStatus::BUSY);
    sim.feed(busy);
    assert!(sim.commands().is_empty(), "not at once");
    sim.advance(Duration::from_millis(5));
    let again = sim.commands();
    assert_eq!(again.len(), 1);
    let full = sim.target.response(again[0].itt, ScsiStatus::TASK_SET_FULL);
    sim.feed(full);
    sim.advance(Duration::from_millis(10));
    let third = sim.commands();
    let pdu = sim.target.data_in(third[0].itt, 0, 0, &[8; 512], true);
    sim.feed(pdu);
    assert_eq!(only_ok(sim.completions())[0].0, id);
}

/// Commands queued behind a window the target keeps closed (MaxCmdSN = ExpCmdSN - 1) fail
/// after the command timeout, even while the target answers pings.
#[test]
fn a_window_closed_for_good_times_commands_out() {
    let mut sim = Sim::default();
    sim.target.window = 0;
    let start = sim.target.start(sim.negotiated.clone());
    sim.session.handle_connected(&start, sim.now);
    let id = sim.read(512);
    assert!(sim.commands().is_empty(), "window closed");
    for _ in 0..40 {
        sim.advance(Duration::from_secs(1));
        assert!(sim.exchange().is_empty());
    }
    let done = sim.completions();
    assert!(
        matches!(done[..], [(i, Err(TaskError::Timeout))] if i == id),
        "{done:?}"
    );
    assert!(sim.events().is_empty(), "the connection itself is fine");
}

/// A target ping's data is echoed, cut to what the target accepts in one segment.
#[test]
fn a_nop_in_echo_is_bounded_by_the_targets_segment_length() {
    let mut sim = Sim::new(SessionConfig::default(), negotiated(512, true, false));
    let ping = Pdu::NopIn(NopIn {
        itt: RESERVED_TAG,
        ttt: 0x77,
        stat_sn: sim.target.stat_sn,
        exp_cmd_sn: sim.target.exp_cmd_sn,
        max_cmd_sn: sim.target.max_cmd_sn(),
        data: Bytes::from(vec![0xab; 4096]),
        ..NopIn::default()
    });
    sim.feed(ping);
    let sent = sim.sent();
    let [Pdu::NopOut(pong)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!((pong.ttt, pong.data.len()), (0x77, 512));
}

/// A silent connection is declared dead within noop-interval + noop-timeout even when bytes
/// of a PDU stopped arriving half-way (the driver reports them as progress).
#[test]
fn silence_in_the_middle_of_a_pdu_is_detected() {
    let mut sim = Sim::default();
    sim.read(512);
    sim.commands();
    sim.advance(Duration::from_secs(3));
    sim.session.handle_progress(sim.now); // half a Data-In arrived
    let silent_from = sim.now;
    for _ in 0..20 {
        if !sim.events().is_empty() {
            break;
        }
        sim.run_to_timeout();
    }
    assert!(!sim.session.is_connected());
    assert!(sim.now - silent_from <= Duration::from_secs(10));
}

/// The owner's task management: a LUN reset through this session re-issues what it aborted
/// and reports the target's answer.
#[test]
fn an_owner_lun_reset_reports_and_reissues() {
    let mut sim = Sim::default();
    let read = sim.read(512);
    let cmd = sim.commands().remove(0);
    let tm = TaskManagement {
        function: TmFunction::LOGICAL_UNIT_RESET,
        lun: Lun::from_number(1),
        task: None,
    };
    let reset = sim.session.submit_task_management(tm, sim.now).unwrap();
    let req = sim.sent_of(tmf_requests).remove(0);
    assert_eq!(req.function, TmFunction::LOGICAL_UNIT_RESET);
    let answer = sim
        .target
        .tmf_response(req.itt, TmResponse::FUNCTION_COMPLETE);
    sim.feed(answer);
    let outcomes = sim.outcomes();
    assert!(matches!(
        outcomes[..],
        [(i, Ok(Outcome::TaskManagement(TmResponse::FUNCTION_COMPLETE)))] if i == reset
    ));
    sim.run_to_timeout();
    let again = sim.commands();
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].cmd_sn, cmd.cmd_sn);
    let pdu = sim.target.data_in(again[0].itt, 0, 0, &[1; 512], true);
    sim.feed(pdu);
    assert_eq!(only_ok(sim.completions())[0].0, read);
}

/// The target's FirstBurstLength above its MaxBurstLength is used as MaxBurstLength: no
/// unsolicited burst exceeds it.
#[test]
fn first_burst_is_clamped_to_max_burst() {
    let mut n = negotiated(8192, true, false);
    n.first_burst_length = 65536;
    n.max_burst_length = 16384;
    let mut sim = Sim::new(SessionConfig::default(), n);
    sim.write(&pattern(65536, 9));
    let sent = sim.sent();
    let unsolicited: usize = sent
        .iter()
        .map(|p| match p {
            Pdu::ScsiCommand(c) => c.data.len(),
            Pdu::DataOut(DataOut { data, .. }) => data.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(unsolicited, 16384);
    let _ = ConnectionFailure::Io;
}

/// tgtd answers commands a LOGICAL UNIT RESET aborted after the reset's own response: an
/// R2T for an aborted write, a SCSI Response (TASK ABORTED) for an aborted read. Those late
/// PDUs are dropped — the R2T unanswered, so the aborted write cannot reach the LU after the
/// reset — and the connection the reset went through stays up (found by scripts/soak: each
/// multipath LUN reset dropped the very path it was sent on).
#[test]
fn late_answers_to_commands_a_lun_reset_aborted_are_dropped() {
    let mut sim = Sim::new(SessionConfig::default(), negotiated(8192, false, true));
    let write = sim.write(&pattern(4096, 5));
    let read = sim.read(512);
    let first = sim.commands();
    assert_eq!(first.len(), 2);
    let tm = TaskManagement {
        function: TmFunction::LOGICAL_UNIT_RESET,
        lun: Lun::from_number(1),
        task: None,
    };
    let reset = sim.session.submit_task_management(tm, sim.now).unwrap();
    let req = sim.sent_of(tmf_requests).remove(0);
    let answer = sim
        .target
        .tmf_response(req.itt, TmResponse::FUNCTION_COMPLETE);
    sim.feed(answer);
    assert!(matches!(sim.outcomes()[..], [(i, Ok(Outcome::TaskManagement(_)))] if i == reset));
    let r2t = sim.target.r2t(first[0].itt, 0, 0, 4096);
    sim.feed(r2t);
    let late = sim.target.response(first[1].itt, ScsiStatus::TASK_ABORTED);
    sim.feed(late);
    assert!(sim.session.is_connected(), "{:?}", sim.events());
    assert!(
        !sim.sent().iter().any(|p| matches!(p, Pdu::DataOut(_))),
        "data went out for an aborted write"
    );
    // Both run again under new tags, and complete.
    sim.run_to_timeout();
    let again = sim.commands();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|c| first.iter().all(|f| f.itt != c.itt)));
    let (w, r) = if again[0].write {
        (&again[0], &again[1])
    } else {
        (&again[1], &again[0])
    };
    let r2t = sim.target.r2t(w.itt, 0, 0, 4096);
    sim.feed(r2t);
    assert_eq!(
        sim.sent_of(|p| match p {
            Pdu::DataOut(d) => Some(d),
            _ => None,
        })
        .len(),
        1
    );
    let done = sim.target.response(w.itt, ScsiStatus::GOOD);
    sim.feed(done);
    let data = sim.target.data_in(r.itt, 0, 0, &[7; 512], true);
    sim.feed(data);
    let mut ids: Vec<TaskId> = only_ok(sim.completions())
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    let mut want = vec![write, read];
    want.sort();
    assert_eq!(ids, want);
}
