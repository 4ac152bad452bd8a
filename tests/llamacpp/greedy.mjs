// llama.cpp (node-llama-cpp's prebuilt binaries) runs a GGUF file dashq wrote.
//   node greedy.mjs MODEL.gguf N TOKEN_ID...
// Evaluates the prompt token ids, then decodes N tokens greedily (stopping at
// end of generation) and prints the generated ids, then the text, as JSON.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [modelPath, nArg, ...promptArgs] = process.argv.slice(2);
const n = Number(nArg);
const prompt = promptArgs.map(Number);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath});
const context = await model.createContext({contextSize: 256, batchSize: 256, threads: 2});
const sequence = context.getSequence();
const ids = [];
for await (const token of sequence.evaluate(prompt, {temperature: 0})) {
    if (model.isSpecialToken(token) && token === model.tokens.eos) break;
    ids.push(token);
    if (ids.length >= n) break;
}
console.log(JSON.stringify({ids, text: model.detokenize(ids)}));
await context.dispose();
await model.dispose();
await llama.dispose();
