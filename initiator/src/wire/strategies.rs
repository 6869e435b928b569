//! Proptest strategies for every PDU type, producing exactly the values `Pdu::parse`
//! accepts (so that `parse(emit(x)) == x` must hold for all of them).

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;

use crate::wire::codes::*;
use crate::wire::header::{BHS_LEN, RESERVED_TAG};
use crate::wire::lun::Lun;
use crate::wire::pdu::*;

/// A data segment of up to 300 bytes (crossing every padding remainder).
pub(crate) fn data() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn lun() -> impl Strategy<Value = Lun> {
    any::<[u8; 8]>().prop_map(Lun)
}

/// A tag that is the reserved 0xffffffff a quarter of the time.
fn tag() -> impl Strategy<Value = u32> {
    prop_oneof![1 => Just(RESERVED_TAG), 3 => any::<u32>()]
}

/// A valid login stage: 0, 1 or 3.
fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        Just(Stage::SECURITY),
        Just(Stage::OPERATIONAL),
        Just(Stage::FULL_FEATURE)
    ]
}

/// Two flags that must not both be set (T/C, F/C, O/U).
fn exclusive_pair() -> impl Strategy<Value = (bool, bool)> {
    prop_oneof![
        Just((false, false)),
        Just((true, false)),
        Just((false, true))
    ]
}

/// (low, high) with low <= high.
fn ordered_u8() -> impl Strategy<Value = (u8, u8)> {
    (any::<u8>(), any::<u8>()).prop_map(|(a, b)| (a.min(b), a.max(b)))
}

prop_compose! {
    pub(crate) fn login_request()(
        (transit, cont) in exclusive_pair(), csg in stage(), nsg in stage(),
        (version_min, version_max) in ordered_u8(), isid: [u8; 6], tsih: u16, itt: u32,
        cid: u16, (cmd_sn, exp_stat_sn) in any::<(u32, u32)>(), data in data(),
    ) -> LoginRequest {
        LoginRequest {
            transit, cont, csg, nsg, version_max, version_min, isid: Isid(isid), tsih, itt,
            cid, cmd_sn, exp_stat_sn, data,
        }
    }
}

prop_compose! {
    pub(crate) fn login_response()(
        (transit, cont) in exclusive_pair(), csg in stage(), nsg in stage(),
        (version_active, version_max) in ordered_u8(), isid: [u8; 6], tsih: u16, itt: u32,
        (stat_sn, exp_cmd_sn, max_cmd_sn) in any::<(u32, u32, u32)>(), status: u16, data in data(),
    ) -> LoginResponse {
        LoginResponse {
            transit, cont, csg, nsg, version_max, version_active, isid: Isid(isid), tsih, itt,
            stat_sn, exp_cmd_sn, max_cmd_sn, status: LoginStatus(status), data,
        }
    }
}

prop_compose! {
    pub(crate) fn text_request()(
        immediate: bool, (final_, cont) in exclusive_pair(), lun in lun(), itt: u32,
        ttt in tag(), (cmd_sn, exp_stat_sn) in any::<(u32, u32)>(), data in data(),
    ) -> TextRequest {
        TextRequest { immediate, final_, cont, lun, itt, ttt, cmd_sn, exp_stat_sn, data }
    }
}

prop_compose! {
    pub(crate) fn text_response()(
        (final_, cont) in exclusive_pair(), lun in lun(), itt: u32, ttt in tag(),
        (stat_sn, exp_cmd_sn, max_cmd_sn) in any::<(u32, u32, u32)>(), data in data(),
    ) -> TextResponse {
        TextResponse { final_, cont, lun, itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn, data }
    }
}

prop_compose! {
    pub(crate) fn scsi_command()(
        immediate: bool, final_: bool, (read, write, edtl) in any::<(bool, bool, u32)>(), attr in 0u8..8,
        lun in lun(), itt: u32, (cmd_sn, exp_stat_sn) in any::<(u32, u32)>(), cdb: [u8; 16],
        extended_cdb in proptest::option::of(vec(any::<u8>(), 0..=244)),
        bidi_read_length: Option<u32>, data in data(),
    ) -> ScsiCommand {
        ScsiCommand {
            immediate, final_, read, write, attr: TaskAttr(attr), lun, itt,
            expected_data_transfer_length: if read || write { edtl } else { 0 },
            cmd_sn, exp_stat_sn, cdb, extended_cdb: extended_cdb.map(Bytes::from),
            bidi_read_length, data,
        }
    }
}

prop_compose! {
    pub(crate) fn scsi_response()(
        (bidi_overflow, bidi_underflow) in exclusive_pair(),
        (overflow, underflow) in exclusive_pair(), response: u8, status: u8, itt: u32,
        snack_tag: u32, (stat_sn, exp_cmd_sn, max_cmd_sn) in any::<(u32, u32, u32)>(),
        (exp_data_sn, bidi_residual, residual) in any::<(u32, u32, u32)>(), data in data(),
    ) -> ScsiResponse {
        ScsiResponse {
            bidi_overflow, bidi_underflow, overflow, underflow, response,
            status: ScsiStatus(status), itt, snack_tag, stat_sn, exp_cmd_sn, max_cmd_sn,
            exp_data_sn, bidi_residual, residual, data,
        }
    }
}

prop_compose! {
    pub(crate) fn data_out()(
        final_: bool, lun in lun(), itt: u32, ttt in tag(), exp_stat_sn: u32, data_sn: u32,
        buffer_offset: u32, data in data(),
    ) -> DataOut {
        DataOut { final_, lun, itt, ttt, exp_stat_sn, data_sn, buffer_offset, data }
    }
}

prop_compose! {
    pub(crate) fn data_in()(
        final_: bool, ack: bool, (overflow, underflow) in exclusive_pair(),
        status_present: bool, status: u8, lun in lun(), itt: u32, ttt in tag(),
        (stat_sn, exp_cmd_sn, max_cmd_sn) in any::<(u32, u32, u32)>(),
        (data_sn, buffer_offset, residual) in any::<(u32, u32, u32)>(), data in data(),
    ) -> DataIn {
        DataIn {
            final_: final_ || status_present, ack, overflow, underflow, status_present,
            status: ScsiStatus(status), lun, itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn,
            data_sn, buffer_offset, residual, data,
        }
    }
}

prop_compose! {
    pub(crate) fn r2t()(
        lun in lun(), itt: u32, ttt in 0..RESERVED_TAG,
        (stat_sn, exp_cmd_sn, max_cmd_sn) in any::<(u32, u32, u32)>(), r2t_sn: u32, buffer_offset: u32,
        desired_data_transfer_length in 1..=u32::MAX,
    ) -> R2t {
        R2t {
            lun, itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn, r2t_sn, buffer_offset,
            desired_data_transfer_length,
        }
    }
}

prop_compose! {
    pub(crate) fn nop_out()(
        immediate: bool, lun in lun(), itt in tag(), ttt in tag(),
        (cmd_sn, exp_stat_sn) in any::<(u32, u32)>(), data in data(),
    ) -> NopOut {
        let immediate = immediate || itt == RESERVED_TAG;
        NopOut { immediate, lun, itt, ttt, cmd_sn, exp_stat_sn, data }
    }
}

prop_compose! {
    pub(crate) fn nop_in()(
        lun in lun(), itt in tag(), ttt in tag(),
        (stat_sn, exp_cmd_sn, max_cmd_sn) in any::<(u32, u32, u32)>(), data in data(),
    ) -> NopIn {
        let ttt = if itt == RESERVED_TAG { ttt } else { RESERVED_TAG };
        let data = if itt == RESERVED_TAG { Bytes::new() } else { data };
        NopIn { lun, itt, ttt, stat_sn, exp_cmd_sn, max_cmd_sn, data }
    }
}

prop_compose! {
    pub(crate) fn logout_request()(
        immediate: bool, reason in 0u8..0x80, itt: u32, cid: u16,
        (cmd_sn, exp_stat_sn) in any::<(u32, u32)>(),
    ) -> LogoutRequest {
        LogoutRequest { immediate, reason: LogoutReason(reason), itt, cid, cmd_sn, exp_stat_sn }
    }
}

prop_compose! {
    pub(crate) fn logout_response()(
        response: u8, itt: u32, (stat_sn, exp_cmd_sn, max_cmd_sn) in any::<(u32, u32, u32)>(),
        time2wait: u16, time2retain: u16,
    ) -> LogoutResponse {
        LogoutResponse {
            response: LogoutResponseCode(response), itt, stat_sn, exp_cmd_sn, max_cmd_sn,
            time2wait, time2retain,
        }
    }
}

prop_compose! {
    pub(crate) fn task_mgmt_request()(
        immediate: bool, function in 0u8..0x80, lun in lun(), itt: u32,
        referenced_task_tag in tag(), (cmd_sn, exp_stat_sn) in any::<(u32, u32)>(),
        (ref_cmd_sn, exp_data_sn) in any::<(u32, u32)>(),
    ) -> TaskMgmtRequest {
        TaskMgmtRequest {
            immediate, function: TmFunction(function), lun, itt, referenced_task_tag, cmd_sn,
            exp_stat_sn, ref_cmd_sn, exp_data_sn,
        }
    }
}

prop_compose! {
    pub(crate) fn task_mgmt_response()(
        response: u8, itt: u32, (stat_sn, exp_cmd_sn, max_cmd_sn) in any::<(u32, u32, u32)>(),
    ) -> TaskMgmtResponse {
        TaskMgmtResponse { response: TmResponse(response), itt, stat_sn, exp_cmd_sn, max_cmd_sn }
    }
}

prop_compose! {
    pub(crate) fn async_message()(
        lun in lun(), (stat_sn, exp_cmd_sn, max_cmd_sn) in any::<(u32, u32, u32)>(), event: u8,
        vendor_code: u8, (parameter1, parameter2, parameter3) in any::<(u16, u16, u16)>(),
        data in data(),
    ) -> AsyncMessage {
        AsyncMessage {
            lun, stat_sn, exp_cmd_sn, max_cmd_sn, event: AsyncEvent(event), vendor_code,
            parameter1, parameter2, parameter3, data,
        }
    }
}

prop_compose! {
    pub(crate) fn reject()(
        reason: u8, (stat_sn, exp_cmd_sn, max_cmd_sn) in any::<(u32, u32, u32)>(),
        data_sn_or_r2t_sn: u32, header in vec(any::<u8>(), BHS_LEN..=BHS_LEN + 8),
    ) -> Reject {
        Reject {
            reason: RejectReason(reason), stat_sn, exp_cmd_sn, max_cmd_sn, data_sn_or_r2t_sn,
            data: Bytes::from(header),
        }
    }
}

prop_compose! {
    pub(crate) fn snack_request()(
        snack_type in 0u8..16, lun in lun(), itt in tag(), ttt in tag(), exp_stat_sn: u32,
        beg_run: u32, run_length: u32,
    ) -> SnackRequest {
        SnackRequest { snack_type, lun, itt, ttt, exp_stat_sn, beg_run, run_length }
    }
}

/// Any PDU the initiator sends.
pub(crate) fn initiator_pdu() -> impl Strategy<Value = Pdu> {
    Union::new(vec![
        nop_out().prop_map(Pdu::NopOut).boxed(),
        scsi_command().prop_map(Pdu::ScsiCommand).boxed(),
        task_mgmt_request().prop_map(Pdu::TaskMgmtRequest).boxed(),
        login_request().prop_map(Pdu::LoginRequest).boxed(),
        text_request().prop_map(Pdu::TextRequest).boxed(),
        data_out().prop_map(Pdu::DataOut).boxed(),
        logout_request().prop_map(Pdu::LogoutRequest).boxed(),
        snack_request().prop_map(Pdu::SnackRequest).boxed(),
    ])
}

/// Any PDU the target sends.
pub(crate) fn target_pdu() -> impl Strategy<Value = Pdu> {
    Union::new(vec![
        nop_in().prop_map(Pdu::NopIn).boxed(),
        scsi_response().prop_map(Pdu::ScsiResponse).boxed(),
        task_mgmt_response().prop_map(Pdu::TaskMgmtResponse).boxed(),
        login_response().prop_map(Pdu::LoginResponse).boxed(),
        text_response().prop_map(Pdu::TextResponse).boxed(),
        data_in().prop_map(Pdu::DataIn).boxed(),
        logout_response().prop_map(Pdu::LogoutResponse).boxed(),
        r2t().prop_map(Pdu::R2t).boxed(),
        async_message().prop_map(Pdu::AsyncMessage).boxed(),
        reject().prop_map(Pdu::Reject).boxed(),
    ])
}

/// Any PDU.
pub(crate) fn any_pdu() -> impl Strategy<Value = Pdu> {
    prop_oneof![initiator_pdu(), target_pdu()]
}

/// Asserts `parse(emit(pdu)) == pdu`, going through the BHS, AHS and data separately.
pub(crate) fn assert_round_trip(pdu: &Pdu) -> Result<(), TestCaseError> {
    let (bhs, ahs) = pdu.encoded_header();
    let ahs = ahs.unwrap_or_default();
    let parsed = Pdu::parse(&bhs, &ahs, pdu.data().clone());
    prop_assert_eq!(parsed.as_ref(), Ok(pdu));
    prop_assert_eq!(
        Pdu::opcode(pdu),
        crate::wire::BasicHeader::from_array(&bhs).opcode()
    );
    prop_assert_eq!(pdu.itt(), crate::wire::BasicHeader::from_array(&bhs).itt());
    Ok(())
}
