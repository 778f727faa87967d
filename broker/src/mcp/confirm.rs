//! Asking the person at the MCP client, the two ways MCP has:
//!
//! - **Elicitation** (protocols before 2026-07-28): the broker sends
//!   `elicitation/create` (form mode) while the tool call waits ([`Elicit`]).
//! - **Input requests** (2026-07-28 and later, where a server may not send
//!   requests of its own): the call answers `InputRequiredResult` with the
//!   same form and an opaque `requestState`; the client retries the call
//!   with the answer. The work does not start again: it waits, parked
//!   here under a random handle bound to the caller, the tool and its
//!   arguments, and goes on when the retry brings the answer ([`Parked`]).
//!   A parked call nobody resumes is dropped (and aborted) when its
//!   question expires, so nothing runs that no client will see.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use rmcp::model::{
    BooleanSchema, ClientResult, ElicitRequest, ElicitRequestParams, ElicitationAction,
    ElicitationSchema, InputRequest, InputRequests, InputRequiredResult, JsonObject,
    PrimitiveSchemaDefinition, ServerRequest,
};
use rmcp::service::{Peer, PeerRequestOptions, RoleServer};
use tokio::sync::{mpsc, oneshot};

use rmcp::model::CallToolResult;

use super::server::AbortOnDrop;
use crate::api::Caller;
use crate::confirm::{Answer, Asking, Confirm, FIELD, Prompt, answer_of, message};

/// The key of the one input request a parked call asks.
pub(super) const INPUT_KEY: &str = "confirm";

/// Most calls parked at once; beyond that (or a caller's share, or large
/// arguments) a question is not asked: the request waits for an operator
/// instead, see [`room`].
const MOST_PARKED: usize = 256;

/// The form: one required boolean, `false` by default.
fn form(prompt: &Prompt) -> ElicitRequestParams {
    let field = BooleanSchema::new()
        .title("Run this command")
        .description("true runs the command exactly as shown")
        .with_default(false);
    let schema = ElicitationSchema::builder()
        .required_property(FIELD, PrimitiveSchemaDefinition::Boolean(field))
        .build_unchecked();
    ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message(prompt),
        requested_schema: schema,
    }
}

/// Asks through `elicitation/create` on a client that declared form mode.
///
/// Sent as a plain request: rmcp's `elicitation` feature (its typed
/// helpers) would bring the `url` crate and ~25 others for URL mode,
/// which the broker does not use.
pub(super) struct Elicit {
    peer: Peer<RoleServer>,
}

impl Elicit {
    /// `Some` when the client can answer a form (a declared `elicitation`
    /// capability without modes means form, as the spec says).
    pub(super) fn for_client(peer: &Peer<RoleServer>) -> Option<Elicit> {
        let info = peer.peer_info()?;
        let elicitation = info.capabilities.elicitation.as_ref()?;
        let form = elicitation.form.is_some() || elicitation.url.is_none();
        form.then(|| Elicit { peer: peer.clone() })
    }
}

impl Confirm for Elicit {
    fn ask(&self, prompt: Prompt) -> Asking {
        let peer = self.peer.clone();
        Box::pin(async move {
            let request = ServerRequest::ElicitRequest(ElicitRequest::new(form(&prompt)));
            let mut options = PeerRequestOptions::no_options();
            options.timeout = Some(prompt.within);
            let answer = match peer.send_request_with_option(request, options).await {
                Ok(handle) => handle.await_response().await,
                Err(error) => Err(error),
            };
            match answer {
                Ok(ClientResult::ElicitResult(result)) => {
                    let action = match result.action {
                        ElicitationAction::Accept => "accept",
                        ElicitationAction::Decline => "decline",
                        _ => "cancel",
                    };
                    Some(answer_of(action, result.content.as_ref()))
                }
                Ok(_) => {
                    tracing::info!(approval_id = %prompt.approval_id, "the client answered the elicitation with something else");
                    None
                }
                Err(error) => {
                    tracing::info!(approval_id = %prompt.approval_id, %error, "elicitation not answered");
                    None
                }
            }
        })
    }
}

/// A question from a running call, to be put to the client as an input
/// request.
pub(super) struct Ask {
    pub(super) prompt: Prompt,
    pub(super) reply: oneshot::Sender<Answer>,
}

/// Asks by handing the question to the frontend, which parks the call.
pub(super) struct Parker {
    asks: mpsc::Sender<Ask>,
}

impl Parker {
    /// A parker and the end the frontend reads questions from.
    pub(super) fn new() -> (Parker, mpsc::Receiver<Ask>) {
        let (asks, questions) = mpsc::channel(1);
        (Parker { asks }, questions)
    }
}

impl Confirm for Parker {
    fn ask(&self, prompt: Prompt) -> Asking {
        let asks = self.asks.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            asks.send(Ask { prompt, reply }).await.ok()?;
            // No timeout here: a call nobody resumes is aborted when its
            // question expires (see `park`).
            answer.await.ok()
        })
    }
}

/// A call waiting for its client to retry with the answer.
pub(super) struct Parked {
    pub(super) task: AbortOnDrop<CallToolResult>,
    pub(super) questions: mpsc::Receiver<Ask>,
    reply: oneshot::Sender<Answer>,
    caller: Caller,
    tool: String,
    args: JsonObject,
}

impl Parked {
    /// Gives the call the user's answer.
    pub(super) fn answer(
        self,
        answer: Answer,
    ) -> (AbortOnDrop<CallToolResult>, mpsc::Receiver<Ask>) {
        // A call that ended meanwhile has nobody to tell.
        let _ = self.reply.send(answer);
        (self.task, self.questions)
    }
}

static PARKED: LazyLock<Mutex<HashMap<String, Parked>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn parked() -> std::sync::MutexGuard<'static, HashMap<String, Parked>> {
    PARKED.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a call parked by [`park`] was: who asked which tool with what.
pub(super) struct Call<'a> {
    pub(super) caller: &'a Caller,
    pub(super) tool: &'a str,
    pub(super) args: &'a JsonObject,
}

/// Most calls one caller may have parked.
const MOST_PARKED_PER_CALLER: usize = 16;

/// Largest arguments kept with a parked call (a file body can be MBs).
const MOST_PARKED_ARGS: usize = 64 * 1024;

/// Whether `call` may be parked: room in the whole table and in its
/// caller's share, and arguments small enough to keep.
pub(super) fn room(call: &Call<'_>) -> bool {
    let all = parked();
    let mine = all.values().filter(|p| p.caller == *call.caller).count();
    let size = serde_json::to_vec(call.args).map_or(usize::MAX, |v| v.len());
    all.len() < MOST_PARKED && mine < MOST_PARKED_PER_CALLER && size <= MOST_PARKED_ARGS
}

/// Parks a call that asked `ask` and returns what tells the client to
/// answer and retry.
pub(super) fn park(
    call: Call<'_>,
    task: AbortOnDrop<CallToolResult>,
    questions: mpsc::Receiver<Ask>,
    ask: Ask,
) -> InputRequiredResult {
    let handle = hex::encode(rand::random::<[u8; 16]>());
    let mut requests = InputRequests::new();
    requests.insert(
        INPUT_KEY.to_owned(),
        InputRequest::Elicitation(ElicitRequest::new(form(&ask.prompt))),
    );
    let within = ask.prompt.within;
    parked().insert(
        handle.clone(),
        Parked {
            task,
            questions,
            reply: ask.reply,
            caller: call.caller.clone(),
            tool: call.tool.to_owned(),
            args: call.args.clone(),
        },
    );
    let expiring = handle.clone();
    tokio::spawn(async move {
        tokio::time::sleep(within).await;
        if parked().remove(&expiring).is_some() {
            tracing::info!("a parked call's question expired unanswered; the call is dropped");
        }
    });
    InputRequiredResult::new(Some(requests), Some(handle))
}

/// Takes the call parked under `handle` if `call` is the same call.
pub(super) fn resume(handle: &str, call: Call<'_>) -> Option<Parked> {
    let mut all = parked();
    let same = all
        .get(handle)
        .is_some_and(|p| p.caller == *call.caller && p.tool == call.tool && p.args == *call.args);
    if same { all.remove(handle) } else { None }
}

/// The user's answer in a retry's `inputResponses`; none is a cancel.
pub(super) fn answer_in(responses: Option<&rmcp::model::InputResponses>) -> Answer {
    let Some(r) = responses.and_then(|r| r.get(INPUT_KEY)) else {
        return Answer::Cancel;
    };
    let action = r
        .get("action")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("cancel");
    answer_of(action, r.get("content"))
}
