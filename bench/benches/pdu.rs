//! The PDU hot path (shared/DESIGN.md "The hot path"): encoding a READ(16) SCSI Command,
//! decoding a 128 KiB Data-In with and without CRC32C digests, CRC32C itself, and the text
//! codec on a login response (RFC 7143 §11.3, §11.7, §11.13, §13.1).
#![allow(missing_docs)] // criterion_main! generates an undocumented `main`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sanshim_initiator::scsi::Cdb;
use sanshim_initiator::wire::{
    Codec, DataIn, Isid, LoginResponse, LoginStatus, Lun, Pdu, ScsiCommand, ScsiStatus, Stage,
    TaskAttr, TextPairs, parse_text,
};

const KIB_128: usize = 128 * 1024;

fn codec(digests: bool) -> Codec {
    Codec {
        header_digest: digests,
        data_digest: digests,
        max_recv_data_segment_length: 256 * 1024,
    }
}

fn digest_name(digests: bool) -> &'static str {
    if digests { "crc32c" } else { "none" }
}

fn read16() -> Pdu {
    Pdu::ScsiCommand(ScsiCommand {
        final_: true,
        read: true,
        attr: TaskAttr::SIMPLE,
        lun: Lun::from_number(1),
        itt: 0x1234,
        expected_data_transfer_length: KIB_128 as u32,
        cmd_sn: 77,
        exp_stat_sn: 66,
        cdb: Cdb::read16(0x0123_4567, 256).padded(),
        ..ScsiCommand::default()
    })
}

fn data_in() -> Pdu {
    let data: Vec<u8> = (0..KIB_128).map(|i| (i * 7 + i / 4096) as u8).collect();
    Pdu::DataIn(DataIn {
        final_: true,
        status_present: true,
        status: ScsiStatus::GOOD,
        itt: 0x1234,
        ttt: 0xffff_ffff,
        stat_sn: 66,
        exp_cmd_sn: 78,
        max_cmd_sn: 140,
        data: Bytes::from(data),
        ..DataIn::default()
    })
}

fn login_response() -> Pdu {
    let text = [
        "HeaderDigest=CRC32C",
        "DataDigest=None",
        "MaxConnections=1",
        "InitialR2T=No",
        "ImmediateData=Yes",
        "MaxRecvDataSegmentLength=262144",
        "MaxBurstLength=1048576",
        "FirstBurstLength=65536",
        "DefaultTime2Wait=2",
        "DefaultTime2Retain=0",
        "MaxOutstandingR2T=1",
        "DataPDUInOrder=Yes",
        "DataSequenceInOrder=Yes",
        "ErrorRecoveryLevel=0",
        "TargetPortalGroupTag=1",
        "TargetAlias=sanshim-bench",
    ]
    .iter()
    .flat_map(|kv| kv.bytes().chain([0]))
    .collect::<Vec<u8>>();
    Pdu::LoginResponse(LoginResponse {
        transit: true,
        csg: Stage::OPERATIONAL,
        nsg: Stage::FULL_FEATURE,
        isid: Isid::random_qualifier(7),
        tsih: 3,
        itt: 1,
        stat_sn: 1,
        exp_cmd_sn: 1,
        max_cmd_sn: 64,
        status: LoginStatus::SUCCESS,
        data: Bytes::from(text),
        ..LoginResponse::default()
    })
}

fn encode_scsi_command(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_read16");
    let pdu = read16();
    for digests in [false, true] {
        let codec = codec(digests);
        let mut out = BytesMut::with_capacity(128);
        group.bench_function(digest_name(digests), |b| {
            b.iter(|| {
                out.clear();
                codec.encode(black_box(&pdu), &mut out);
                black_box(out.len())
            })
        });
        group.bench_function(format!("{}_parts", digest_name(digests)), |b| {
            b.iter(|| black_box(codec.encode_parts(black_box(&pdu))))
        });
    }
    group.finish();
}

fn decode_data_in(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_data_in_128k");
    group.throughput(Throughput::Bytes(KIB_128 as u64));
    let pdu = data_in();
    for digests in [false, true] {
        let mut codec = codec(digests);
        let mut wire = BytesMut::new();
        codec.encode(&pdu, &mut wire);
        let wire = wire.freeze();
        group.bench_function(digest_name(digests), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&wire[..]),
                |buf| match codec.decode(buf) {
                    Ok(Some(Pdu::DataIn(d))) => black_box(d.data.len()),
                    other => panic!("Data-In did not decode: {other:?}"),
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn crc32c_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    for len in [48usize, 4096, KIB_128] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(len.to_string(), |b| {
            b.iter(|| crc32c::crc32c(black_box(&data)))
        });
    }
    group.finish();
}

fn login_response_text(c: &mut Criterion) {
    let mut group = c.benchmark_group("login_response");
    let pdu = login_response();
    let mut codec = Codec::new();
    let mut wire = BytesMut::new();
    codec.encode(&pdu, &mut wire);
    let wire = wire.freeze();
    let Pdu::LoginResponse(ref response) = pdu else {
        unreachable!("built as a login response")
    };
    let text = response.data.clone();
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("parse_text", |b| {
        b.iter(|| match parse_text(black_box(&text)) {
            Ok(pairs) => black_box(pairs.len()),
            Err(e) => panic!("text did not parse: {e}"),
        })
    });
    group.bench_function("text_pairs", |b| {
        b.iter(|| match TextPairs::parse(black_box(&text)) {
            Ok(pairs) => black_box(pairs.get("MaxBurstLength").map(str::len)),
            Err(e) => panic!("text did not parse: {e}"),
        })
    });
    group.bench_function("decode_pdu_and_parse", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| match codec.decode(buf) {
                Ok(Some(Pdu::LoginResponse(r))) => match parse_text(&r.data) {
                    Ok(pairs) => black_box(pairs.len()),
                    Err(e) => panic!("text did not parse: {e}"),
                },
                other => panic!("login response did not decode: {other:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    encode_scsi_command,
    decode_data_in,
    crc32c_throughput,
    login_response_text
);
criterion_main!(benches);
