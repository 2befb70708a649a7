//! proto ↔ core conversions. Validation itself lives in `engine::request`.

use super::pb;
use crate::activation::ActivationChoice;
use crate::api::tenant::Tenant;
use crate::config::RequestLimits;
use crate::engine::request::{
    check_id, check_model_name, Options, RerankFields, Truncation, ValidRerank, ValidScore,
};
use crate::engine::{Ranked, RerankOutput, ScoreOutput, ServeError, Timing, Usage};

pub fn activation(value: i32) -> Result<ActivationChoice, ServeError> {
    match pb::Activation::try_from(value) {
        Ok(pb::Activation::ModelDefault) => Ok(ActivationChoice::Default),
        Ok(pb::Activation::None) => Ok(ActivationChoice::None),
        Ok(pb::Activation::Sigmoid) => Ok(ActivationChoice::Sigmoid),
        Ok(pb::Activation::Softmax) => Ok(ActivationChoice::Softmax),
        Err(_) => Err(ServeError::Invalid(format!(
            "`activation` is {value}, not a known Activation (0-3)"
        ))),
    }
}

pub fn truncation(value: i32) -> Result<Truncation, ServeError> {
    match pb::Truncation::try_from(value) {
        Ok(pb::Truncation::LongestFirst) => Ok(Truncation::LongestFirst),
        Ok(pb::Truncation::Reject) => Ok(Truncation::Reject),
        Err(_) => Err(ServeError::Invalid(format!(
            "`truncation` is {value}, not a known Truncation (0-1)"
        ))),
    }
}

pub fn options(
    model: String,
    act: i32,
    trunc: i32,
    instruction: Option<String>,
) -> Result<Options, ServeError> {
    check_model_name(&model)?;
    Ok(Options {
        model,
        activation: activation(act)?,
        truncation: truncation(trunc)?,
        instruction,
        ..Options::default()
    })
}

/// `options` with the request's priority and the call's tenant (checked with the rest by
/// `ValidScore::new` / `ValidRerank::new`).
fn classed(options: Options, priority: u32, tenant: &Tenant) -> Options {
    Options {
        priority,
        tenant: tenant.0.clone(),
        ..options
    }
}

pub fn score_request(
    r: pb::ScoreRequest,
    tenant: &Tenant,
    limits: &RequestLimits,
) -> Result<ValidScore, ServeError> {
    check_id("request_id", &r.request_id, limits)?;
    let options = options(r.model, r.activation, r.truncation, r.instruction)?;
    let options = classed(options, r.priority, tenant);
    let pairs = r.pairs.into_iter().map(|p| (p.text_a, p.text_b)).collect();
    ValidScore::new(options, pairs, limits)
}

pub fn rerank_request(
    r: pb::RerankRequest,
    tenant: &Tenant,
    limits: &RequestLimits,
) -> Result<ValidRerank, ServeError> {
    check_id("request_id", &r.request_id, limits)?;
    let options = options(r.model, r.activation, r.truncation, r.instruction)?;
    let options = classed(options, r.priority, tenant);
    let fields = RerankFields {
        query: r.query,
        documents: r.documents.into_iter().map(|d| (d.id, d.text)).collect(),
        top_n: r.top_n as usize,
        return_documents: r.return_documents,
        min_score: r.min_score,
    };
    ValidRerank::new(options, fields, limits)
}

pub fn usage(u: Usage) -> pb::Usage {
    pb::Usage {
        pairs: u.pairs as u32,
        tokens: u.tokens as u64,
        truncated_pairs: u.truncated as u32,
    }
}

pub fn timing(t: Timing) -> pb::Timing {
    let us = |d: std::time::Duration| d.as_micros() as u64;
    pb::Timing {
        queue_us: us(t.queue),
        tokenize_us: us(t.tokenize),
        inference_us: us(t.inference),
        total_us: us(t.total),
    }
}

pub fn score_response(out: ScoreOutput, request_id: String) -> pb::ScoreResponse {
    let results = out
        .scores
        .into_iter()
        .zip(out.truncated)
        .map(|(scores, truncated)| pb::PairScores { scores, truncated })
        .collect();
    pb::ScoreResponse {
        results,
        request_id,
        model: out.model,
        usage: Some(usage(out.usage)),
        timing: Some(timing(out.timing)),
        error: None,
    }
}

pub fn ranked(r: Ranked) -> pb::RankedDocument {
    pb::RankedDocument {
        index: r.index as u32,
        id: r.id,
        score: r.score,
        text: r.text.unwrap_or_default(),
    }
}

pub fn rerank_response(out: RerankOutput, request_id: String) -> pb::RerankResponse {
    pb::RerankResponse {
        results: out.results.into_iter().map(ranked).collect(),
        request_id,
        model: out.model,
        usage: Some(usage(out.usage)),
        timing: Some(timing(out.timing)),
    }
}
