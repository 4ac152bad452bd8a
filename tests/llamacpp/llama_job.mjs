// llama.cpp (node-llama-cpp's prebuilt binaries) tokenizes and generates for
// a list of jobs with one model load:
//   node llama_job.mjs MODEL.gguf JOB.json
// JOB.json: {"tokenize": [{"file": "STRINGS.jsonl", "special": false}, ...],
//            "greedy": [{"text": "...", "special": true, "n": 32}, ...]}
// STRINGS.jsonl holds one JSON string a line. Tokenization is llama_tokenize
// with add_special = false (no BOS) and parse_special as given. A greedy job
// tokenizes its text the same way, evaluates it and decodes up to n (may be 0) tokens at
// temperature 0, stopping at an end-of-generation token (EOS, <|im_end|>,
// <|eot_id|>...). Prints {"tokenize": [[ids per string], ...],
// "greedy": [{"prompt": ids, "ids": ids, "text": "..."}, ...]} as JSON.
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [modelPath, jobPath] = process.argv.slice(2);
const job = JSON.parse(readFileSync(jobPath, "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath});
const out = {tokenize: [], greedy: []};
for (const t of job.tokenize ?? []) {
    const lines = readFileSync(t.file, "utf8").split("\n").filter((l) => l !== "");
    out.tokenize.push(lines.map((l) => Array.from(model.tokenize(JSON.parse(l), Boolean(t.special)))));
}
for (const g of job.greedy ?? []) {
    const prompt = Array.from(model.tokenize(g.text, Boolean(g.special)));
    if (!(g.n > 0)) { /* n = 0: only the prompt's tokens */
        out.greedy.push({prompt, ids: [], text: ""});
        continue;
    }
    const context = await model.createContext({contextSize: 256, batchSize: 256, threads: 2});
    const sequence = context.getSequence();
    const ids = [];
    for await (const token of sequence.evaluate(prompt, {temperature: 0})) {
        if (model.isEogToken(token)) break;
        ids.push(token);
        if (ids.length >= g.n) break;
    }
    out.greedy.push({prompt, ids, text: model.detokenize(ids)});
    await context.dispose();
}
console.log(JSON.stringify(out));
await model.dispose();
await llama.dispose();
