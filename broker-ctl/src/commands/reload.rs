//! `broker-ctl reload`: `POST /v1/reload` with the operator's certificate.

use std::process::ExitCode;

use infrabroker_common::client::ClientError;
use infrabroker_common::wire::ReloadResponse;

use super::{Failure, Outcome, ServiceArgs};

pub fn run(args: &ServiceArgs) -> Outcome {
    let rt = super::runtime()?;
    rt.block_on(async {
        let client = args.client().map_err(|e| Failure::other(e.to_string()))?;
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
