//! proto ↔ core conversions. Validation itself lives in `engine::request`.

use super::pb;
use crate::activation::ActivationChoice;
use crate::api::tenant::Tenant;
use crate::config::RequestLimits;
use crate::engine::request::{
    check_id, check_model_name, ChunkOptions, Options, RerankFields, Truncation, ValidRerank,
    ValidScore,
};
use crate::engine::{Ranked, RerankOutput, ScoreOutput, ServeError, Timing, Usage};
use crate::pooling::Pooling;
use crate::tokenize::Span;

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
        Ok(pb::Truncation::Chunk) => Ok(Truncation::Chunk),
        Err(_) => Err(ServeError::Invalid(format!(
            "`truncation` is {value}, not a known Truncation (0-2)"
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

/// The caps on texts and the chunk options of a request (zero fields: the defaults).
pub struct LongTexts {
    pub max_tokens_per_doc: u32,
    pub max_query_tokens: u32,
    pub chunking: Option<pb::ChunkOptions>,
}

/// `options` with a request's caps on texts and chunk options (checked with the rest by
/// `check_options`).
pub fn long_texts(options: Options, t: LongTexts) -> Result<Options, ServeError> {
    let nonzero = |n: u32| (n > 0).then_some(n as usize);
    let c = t.chunking.unwrap_or_default();
    let pooling = match pb::ChunkPooling::try_from(c.pooling) {
        Ok(pb::ChunkPooling::Max) => Pooling::Max,
        Ok(pb::ChunkPooling::Mean) => Pooling::Mean,
        Err(_) => {
            return Err(ServeError::Invalid(format!(
                "`chunking.pooling` is {}, not a known ChunkPooling (0-1)",
                c.pooling
            )))
        }
    };
    Ok(Options {
        max_tokens_per_doc: nonzero(t.max_tokens_per_doc),
        max_query_tokens: nonzero(t.max_query_tokens),
        chunking: ChunkOptions {
            overlap: c.overlap_tokens as usize,
            max_chunks_per_doc: nonzero(c.max_chunks_per_doc),
            pooling,
        },
        ..options
    })
}

pub fn chunk(span: Option<Span>) -> Option<pb::Chunk> {
    span.map(|s| pb::Chunk {
        index: s.index,
        start: s.start,
        end: s.end,
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
    let long = LongTexts {
        max_tokens_per_doc: r.max_tokens_per_doc,
        max_query_tokens: r.max_query_tokens,
        chunking: r.chunking,
    };
    let options = long_texts(options, long)?;
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
    let long = LongTexts {
        max_tokens_per_doc: r.max_tokens_per_doc,
        max_query_tokens: r.max_query_tokens,
        chunking: r.chunking,
    };
    let options = long_texts(options, long)?;
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
        chunks: u.chunks as u32,
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
    let best = out.best_chunks;
    let results = out
        .scores
        .into_iter()
        .zip(out.truncated)
        .enumerate()
        .map(|(i, (scores, truncated))| pb::PairScores {
            scores,
            truncated,
            best_chunk: chunk(best.get(i).copied().flatten()),
        })
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
        best_chunk: chunk(r.best_chunk),
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
