use super::*;

#[test]
fn reason_code_spelling_matches_serde() {
    let all = [
        ReasonCode::Allowed,
        ReasonCode::NeedsApproval,
        ReasonCode::CommandDenied,
        ReasonCode::AllowlistNoMatch,
        ReasonCode::ParseRejected,
        ReasonCode::ExecOption,
        ReasonCode::CommandInvalid,
        ReasonCode::MalformedRequest,
        ReasonCode::BodyTooLarge,
        ReasonCode::PubkeyInvalid,
        ReasonCode::CallerUnknown,
        ReasonCode::CallerInvalid,
        ReasonCode::ForwarderUntrusted,
        ReasonCode::HostUnknown,
        ReasonCode::HostForbidden,
        ReasonCode::EndUserForbidden,
        ReasonCode::EndUserInvalid,
        ReasonCode::BastionNotAllowed,
        ReasonCode::SudoNotAllowed,
        ReasonCode::SudoUserInvalid,
        ReasonCode::SudoUserNotAllowed,
        ReasonCode::PtyNotAllowed,
        ReasonCode::SessionModeNotAllowed,
        ReasonCode::InvalidRequest,
        ReasonCode::ReloadForbidden,
        ReasonCode::ReloadFailed,
        ReasonCode::AuditUnavailable,
        ReasonCode::StoreUnavailable,
        ReasonCode::Frozen,
        ReasonCode::FreezeForbidden,
        ReasonCode::Internal,
        ReasonCode::NotFound,
        ReasonCode::SigningFailed,
        ReasonCode::CaUnavailable,
        ReasonCode::RateLimited,
        ReasonCode::FileTransferNotAllowed,
        ReasonCode::PathInvalid,
        ReasonCode::PathForbidden,
        ReasonCode::FileTooLarge,
    ];
    for code in all {
        assert_eq!(
            serde_json::to_value(code).unwrap(),
            serde_json::Value::String(code.as_str().to_owned())
        );
    }
}

#[test]
fn sign_request_refuses_unknown_fields_and_accepts_public_key_alias() {
    let ok: SignRequest = serde_json::from_str(
        r#"{"host":"h","role":"target","purpose":"oneshot","command":"id","public_key":"k"}"#,
    )
    .unwrap();
    assert_eq!(ok.pubkey, "k");
    assert!(
        serde_json::from_str::<SignRequest>(
            r#"{"host":"h","role":"target","purpose":"oneshot","bogus":1}"#
        )
        .is_err()
    );
}
