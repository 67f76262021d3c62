/**
 * A model as a GGUF file for llama.cpp and Ollama: `exportGguf(model, file, {dtype, tokenizer})`.
 *
 * Architectures: Llama (`llama`) and Qwen2 (`qwen2`) causal LMs. GLM-4's partial interleaved RoPE
 * and models without an LM head are refused (RlhfError UNSUPPORTED). A LoRA model is exported with
 * W + (α/r)·B·A merged.
 *
 * Tensor names follow llama.cpp: model.embed_tokens → token_embd, layers.N.input_layernorm →
 * blk.N.attn_norm, self_attn.{q,k,v,o}_proj → blk.N.attn_{q,k,v,output}, post_attention_layernorm →
 * blk.N.ffn_norm, mlp.{gate,up,down}_proj → blk.N.ffn_{gate,up,down}, model.norm → output_norm,
 * lm_head → output (omitted when tied: llama.cpp then uses token_embd). For `llama`, llama.cpp
 * applies RoPE to adjacent pairs (x[2i], x[2i+1]) where Hugging Face rotates halves (x[i],
 * x[i+D/2]), so the rows of q_proj and k_proj (weights and biases) are reordered within each head:
 * GGUF row h·D + 2j + i = HF row h·D + i·D/2 + j (i ∈ {0,1}, j < D/2), as convert_hf_to_gguf.py
 * does. `qwen2` uses the half-rotation (NeoX) order and keeps the rows as they are.
 *
 * dtype: 'f32' stores every tensor as F32; 'bf16' and 'q8_0' store 2-D weights so and keep norms
 * and biases in F32 (as llama.cpp's converter does); a Q8_0 matrix whose rows are not a multiple of
 * 32 long stays F32.
 *
 * Tokenizer metadata (`tokenizer.ggml.model = "gpt2"`, byte-level BPE):
 *  - the built-in ByteTokenizer maps exactly: ids 0..255 are the byte-level characters of bytes
 *    0..255 and there are no merges, so llama.cpp splits any text into its UTF-8 bytes, as ours
 *    does; the special tokens are CONTROL tokens and the chat template is the built-in format.
 *  - a Hugging Face directory whose tokenizer.json is a byte-level BPE (GPT-2, Llama 3, Qwen):
 *    vocabulary, merges, added tokens (special → CONTROL, others → USER_DEFINED), the pre-tokenizer
 *    name llama.cpp knows for its split regex, and the chat template.
 * Vocabulary rows past the tokenizer's size are `[PAD<id>]` UNUSED tokens.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, RlhfError } from '../errors.js';
import { ByteTokenizer } from '../tokenizer/byte.js';
import { loadTokenizer } from '../tokenizer/load.js';
import type { Tokenizer } from '../tokenizer/types.js';
import { checkString, options, typeError } from '../validate.js';
import { adapterTarget, isAdapterTensor, mergeAdapter } from '../engine/lora.js';
import type { Model } from '../engine/model.js';
import {
  encodeTensor,
  GGUF_DEFAULT_ALIGNMENT,
  Q8_0_BLOCK,
  writeGguf,
  type GgmlType,
  type GgufTensorIn,
  type GgufValue,
} from './gguf.js';

export const GGUF_DTYPES = ['f32', 'bf16', 'q8_0'] as const;
export type GgufDType = (typeof GGUF_DTYPES)[number];

export interface GgufExportOptions {
  /** storage of the 2-D weights (default 'f32') */
  dtype?: GgufDType;
  /** the model's tokenizer: a ByteTokenizer, or a directory holding tokenizer.json (+ tokenizer_config.json) */
  tokenizer: ByteTokenizer | string;
  /** general.name (default: none) */
  name?: string;
}

/** llama.cpp's token types. */
const TOKEN_TYPE = { normal: 1, control: 3, userDefined: 4, unused: 5 } as const;
/** general.file_type: LLAMA_FTYPE_ALL_F32, MOSTLY_BF16, MOSTLY_Q8_0 */
const FILE_TYPE: Record<GgufDType, number> = { f32: 0, bf16: 32, q8_0: 7 };

/** The GPT-2 byte-to-unicode table: printable Latin-1 bytes map to themselves, the rest to U+0100 on. */
export function byteLevelAlphabet(): string[] {
  const keep = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(keep(b) ? b : next++));
  return out;
}

/** Split regexes of byte-level BPE tokenizers, with the name llama.cpp gives their pre-tokenizer. */
const KNOWN_PRE: Array<[string, string]> = [
  [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    'qwen2',
  ],
  [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    'llama-bpe',
  ],
  ["'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", 'gpt-2'],
];

const BYTE_CHAT_TEMPLATE =
  "{% for message in messages %}{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('roles: system, user, assistant') }}{% endif %}" +
  "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

interface TokenizerMeta {
  tokens: string[];
  types: number[];
  merges: string[];
  pre: string;
  tok: Tokenizer;
  chatTemplate?: string;
  addBos: boolean;
}

function unsupported(msg: string): never {
  throw new RlhfError(ErrorCode.UNSUPPORTED, `exportGguf: ${msg}`);
}

function byteTokenizerMeta(tok: ByteTokenizer): TokenizerMeta {
  const tokens = [...byteLevelAlphabet(), ...tok.specialTokens];
  const types = tokens.map((_, i) => (i < 256 ? TOKEN_TYPE.normal : TOKEN_TYPE.control));
  return { tokens, types, merges: [], pre: 'default', tok, chatTemplate: BYTE_CHAT_TEMPLATE, addBos: false };
}

function hasByteLevel(node: unknown): boolean {
  if (!node || typeof node !== 'object') return false;
  const n = node as { type?: unknown; pretokenizers?: unknown[] };
  return n.type === 'ByteLevel' || (Array.isArray(n.pretokenizers) && n.pretokenizers.some(hasByteLevel));
}

function splitRegex(node: unknown): string | undefined {
  if (!node || typeof node !== 'object') return undefined;
  const n = node as { type?: unknown; pattern?: { Regex?: unknown }; pretokenizers?: unknown[] };
  if (n.type === 'Split' && typeof n.pattern?.Regex === 'string') return n.pattern.Regex;
  if (n.type === 'ByteLevel' && (n as { use_regex?: unknown }).use_regex !== false) return KNOWN_PRE[2][0];
  for (const c of n.pretokenizers ?? []) {
    const r = splitRegex(c);
    if (r) return r;
  }
  return undefined;
}

async function hfTokenizerMeta(dir: string): Promise<TokenizerMeta> {
  const tok = await loadTokenizer(dir);
  if (tok instanceof ByteTokenizer) return byteTokenizerMeta(tok);
  const path = join(dir, 'tokenizer.json');
  const json = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  const model = json.model as { type?: unknown; vocab?: Record<string, number>; merges?: unknown[] } | undefined;
  if (model?.type !== 'BPE' || !hasByteLevel(json.pre_tokenizer))
    unsupported(
      `${path}: only byte-level BPE tokenizers (GPT-2, Llama 3, Qwen) map to llama.cpp's "gpt2" tokenizer; this one has model ${JSON.stringify(model?.type)} without a ByteLevel pre-tokenizer`,
    );
  const tokens: string[] = [];
  const types: number[] = [];
  const put = (id: number, text: string, type: number) => {
    if (!Number.isInteger(id) || id < 0)
      throw new RlhfError(ErrorCode.FORMAT, `exportGguf: ${path}: bad token id ${id} for ${JSON.stringify(text)}`);
    tokens[id] = text;
    types[id] = type;
  };
  for (const [text, id] of Object.entries(model.vocab ?? {})) put(id, text, TOKEN_TYPE.normal);
  for (const a of (json.added_tokens as Array<{ id: number; content: string; special?: boolean }> | undefined) ?? [])
    put(a.id, a.content, a.special ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined);
  for (let i = 0; i < tokens.length; i++) if (tokens[i] === undefined) put(i, `[PAD${i}]`, TOKEN_TYPE.unused);
  const merges = (model.merges ?? []).map((m, i) => {
    if (typeof m === 'string') return m;
    if (Array.isArray(m) && m.length === 2 && m.every((s) => typeof s === 'string')) return `${m[0]} ${m[1]}`;
    throw new RlhfError(ErrorCode.FORMAT, `exportGguf: ${path}: model.merges[${i}] is neither "a b" nor ["a", "b"]`);
  });
  const regex = splitRegex(json.pre_tokenizer);
  const pre = KNOWN_PRE.find(([r]) => r === regex)?.[1] ?? 'default';
  const config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8').catch(() => '{}')) as Record<
    string,
    unknown
  >;
  const chatTemplate = (tok as { chatTemplate?: string }).chatTemplate;
  return { tokens, types, merges, pre, tok, chatTemplate, addBos: config.add_bos_token === true };
}

/** Reorders the rows of a q/k projection (weight [heads·D, cols] or bias [heads·D]) from HF's half rotation to llama.cpp's pair rotation. */
export function permuteForPairRope(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols;
  const D = rows / heads;
  if (!Number.isInteger(D) || D % 2)
    throw new RangeError(`permuteForPairRope: ${rows} rows do not split into ${heads} heads of even size`);
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < D / 2; j++)
        out.set(
          w.subarray((h * D + i * (D / 2) + j) * cols, (h * D + i * (D / 2) + j + 1) * cols),
          (h * D + 2 * j + i) * cols,
        );
  return out;
}

const LAYER_NAMES: Array<[string, string]> = [
  ['input_layernorm.weight', 'attn_norm.weight'],
  ['self_attn.q_proj.weight', 'attn_q.weight'],
  ['self_attn.k_proj.weight', 'attn_k.weight'],
  ['self_attn.v_proj.weight', 'attn_v.weight'],
  ['self_attn.q_proj.bias', 'attn_q.bias'],
  ['self_attn.k_proj.bias', 'attn_k.bias'],
  ['self_attn.v_proj.bias', 'attn_v.bias'],
  ['self_attn.o_proj.weight', 'attn_output.weight'],
  ['self_attn.o_proj.bias', 'attn_output.bias'],
  ['post_attention_layernorm.weight', 'ffn_norm.weight'],
  ['mlp.gate_proj.weight', 'ffn_gate.weight'],
  ['mlp.up_proj.weight', 'ffn_up.weight'],
  ['mlp.down_proj.weight', 'ffn_down.weight'],
];

/** The llama.cpp name of an engine (Hugging Face) tensor name. */
export function ggufTensorName(hfName: string): string {
  if (hfName === 'model.embed_tokens.weight') return 'token_embd.weight';
  if (hfName === 'model.norm.weight') return 'output_norm.weight';
  if (hfName === 'lm_head.weight') return 'output.weight';
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  const hit = m && LAYER_NAMES.find(([hf]) => hf === m[2]);
  if (!m || !hit) unsupported(`no llama.cpp name for tensor ${JSON.stringify(hfName)}`);
  return `blk.${m[1]}.${hit[1]}`;
}

function storageType(dtype: GgufDType, shape: number[]): GgmlType {
  if (shape.length < 2 || dtype === 'f32') return 'F32';
  if (dtype === 'bf16') return 'BF16';
  return shape[shape.length - 1] % Q8_0_BLOCK === 0 ? 'Q8_0' : 'F32';
}

/** The model's weights by engine name, LoRA adapters merged in. */
async function mergedWeights(model: Model): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const weights = new Map<string, { shape: number[]; data: Float32Array }>();
  const adapters = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const p of model.parameters())
    (isAdapterTensor(p.name) ? adapters : weights).set(p.name, {
      shape: p.shape,
      data: await model.getParameter(p.name),
    });
  if (model.lora) {
    for (const [name, a] of adapters) {
      const target = adapterTarget(name);
      if (target.which !== 'A') continue;
      const b = adapters.get(name.replace('.lora_A.', '.lora_B.'))!;
      const w = weights.get(target.base)!;
      mergeAdapter(w.data, a.data, b.data, b.shape[0], a.shape[1], model.lora.rank, model.lora.alpha / model.lora.rank);
    }
  }
  return weights;
}

/**
 * Writes `model` as a GGUF file at `file` (atomically: a temporary file renamed over it). The whole
 * file is assembled in memory first.
 *
 * @throws RlhfError UNSUPPORTED for an architecture or tokenizer llama.cpp cannot be given faithfully.
 */
export async function exportGguf(model: Model, file: string, opts: GgufExportOptions): Promise<void> {
  const fn = 'exportGguf';
  checkString(fn, 'file', file);
  const o = options(fn, 'options', opts);
  o.known(['dtype', 'tokenizer', 'name']);
  const dtype = o.oneOf('dtype', GGUF_DTYPES, 'f32');
  const name = opts.name === undefined ? undefined : checkString(fn, 'options.name', opts.name);
  const tokOpt = opts.tokenizer;
  if (!(tokOpt instanceof ByteTokenizer) && typeof tokOpt !== 'string')
    throw typeError(fn, 'options.tokenizer', 'a ByteTokenizer or a tokenizer directory path', tokOpt);
  const c = model.config;
  if (c.family === 'glm')
    unsupported('GLM-4 (partial interleaved RoPE) is not exported: its llama.cpp mapping is not verified here');
  if (c.family !== 'llama' && c.family !== 'qwen2')
    unsupported(`${c.architecture} is not exported: its llama.cpp mapping is not verified here`);
  if (!c.lmHead) unsupported(`${c.architecture} has no LM head; only causal LMs are exported`);
  if (model.tensorParallel > 1) unsupported('export a tensor-parallel model from a single-rank copy');
  const arch = c.family === 'llama' ? 'llama' : 'qwen2';
  const tk = tokOpt instanceof ByteTokenizer ? byteTokenizerMeta(tokOpt) : await hfTokenizerMeta(tokOpt);
  if (tk.tokens.length > c.vocab)
    unsupported(`the tokenizer has ${tk.tokens.length} tokens but the model's vocabulary is ${c.vocab}`);
  for (let i = tk.tokens.length; i < c.vocab; i++) (tk.tokens.push(`[PAD${i}]`), tk.types.push(TOKEN_TYPE.unused));

  const meta = new Map<string, GgufValue>();
  const u32 = (k: string, v: number) => meta.set(k, { type: 'u32', value: v });
  const f32 = (k: string, v: number) => meta.set(k, { type: 'f32', value: v });
  const str = (k: string, v: string) => meta.set(k, { type: 'string', value: v });
  str('general.architecture', arch);
  if (name !== undefined) str('general.name', name);
  u32('general.alignment', GGUF_DEFAULT_ALIGNMENT);
  u32('general.file_type', FILE_TYPE[dtype]);
  u32(`${arch}.vocab_size`, c.vocab);
  u32(`${arch}.context_length`, c.maxPositions);
  u32(`${arch}.embedding_length`, c.hidden);
  u32(`${arch}.block_count`, c.layers);
  u32(`${arch}.feed_forward_length`, c.ffn);
  u32(`${arch}.attention.head_count`, c.heads);
  u32(`${arch}.attention.head_count_kv`, c.kvHeads);
  u32(`${arch}.attention.key_length`, c.headDim);
  u32(`${arch}.attention.value_length`, c.headDim);
  f32(`${arch}.rope.freq_base`, c.ropeTheta);
  u32(`${arch}.rope.dimension_count`, c.rotaryDim);
  f32(`${arch}.attention.layer_norm_rms_epsilon`, c.rmsEps);
  str('tokenizer.ggml.model', 'gpt2');
  str('tokenizer.ggml.pre', tk.pre);
  meta.set('tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: tk.tokens });
  meta.set('tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: tk.types });
  meta.set('tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: tk.merges });
  const bos = c.bosTokenId ?? tk.tok.bosId;
  const eos = c.eosTokenId[0] ?? tk.tok.eosId;
  if (bos !== undefined) u32('tokenizer.ggml.bos_token_id', bos);
  u32('tokenizer.ggml.eos_token_id', eos);
  u32('tokenizer.ggml.padding_token_id', c.padTokenId ?? tk.tok.padId);
  meta.set('tokenizer.ggml.add_bos_token', { type: 'bool', value: tk.addBos });
  if (tk.chatTemplate !== undefined) str('tokenizer.chat_template', tk.chatTemplate);

  const weights = await mergedWeights(model);
  const tensors: GgufTensorIn[] = [];
  for (const [hfName, { shape, data }] of weights) {
    if (hfName === 'lm_head.weight' && c.tieEmbeddings) continue;
    let values = data;
    if (arch === 'llama' && /\.self_attn\.[qk]_proj\./.test(hfName)) {
      const heads = hfName.includes('.q_proj.') ? c.heads : c.kvHeads;
      values = permuteForPairRope(data, heads, shape.length === 2 ? shape[1] : 1);
    }
    const type = storageType(dtype, shape);
    tensors.push({ name: ggufTensorName(hfName), shape, type, data: encodeTensor(values, type) });
  }
  await writeGguf(file, meta, tensors);
}
