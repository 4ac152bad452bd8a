// llama.cpp's tokenizer (node-llama-cpp's prebuilt binaries, vocabulary only)
// on every string of a JSON-lines file: one JSON array of ids per line, special
// tokens written in the text parsed, no BOS added.
//   node tokenize.mjs MODEL.gguf STRINGS.jsonl > IDS.jsonl
// Made tests/fixtures/tokenizer/llamacpp_smollm2.jsonl from the SmolLM2 GGUF.
import fs from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [modelPath, stringsPath] = process.argv.slice(2);
const strings = fs.readFileSync(stringsPath, "utf8").trim().split("\n").map(JSON.parse);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, vocabOnly: true});
for (const s of strings) console.log(JSON.stringify(Array.from(model.tokenize(s, true))));
await model.dispose();
await llama.dispose();
