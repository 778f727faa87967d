//! `broker-ctl reload`: `POST /v1/reload` with the operator's certificate.

use std::process::ExitCode;
use std::time::Duration;

use infrabroker_common::client::{ClientError, MtlsClient};
use infrabroker_common::wire::ReloadResponse;

use super::{Failure, Outcome, ServiceArgs};

pub fn run(args: &ServiceArgs) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::other(e.to_string()))?;
    rt.block_on(async {
        let client = MtlsClient::new(
            &args.url,
            &args.ca,
            &args.cert,
            &args.key,
            Duration::from_secs(15),
        )
        .map_err(|e| Failure::other(e.to_string()))?;
        match client
            .call::<ReloadResponse>(hyper::Method::POST, "/v1/reload", None::<&()>)
            .await
        {
            Ok(r) => {
                println!("reloaded: {} hosts", r.hosts);
                Ok(ExitCode::SUCCESS)
            }
            Err(ClientError::Api { body, .. }) if !body.errors.is_empty() => Err(Failure::config(
                format!("{}\n  {}", body.message, body.errors.join("\n  ")),
            )),
            Err(e) => Err(Failure::unavailable(e.to_string())),
        }
    })
}
