// Reference descriptors from @vladmandic/face-api itself, for tests/test_face_model.py.
//
//   NODE_PATH=~/.cache/simexplain/face-api-node/node_modules \
//     node tests/face_api_reference.js MANIFEST.json OUT.json CROP.ppm [CROP.ppm ...]
//
// Needs @vladmandic/face-api, @tensorflow/tfjs and @tensorflow/tfjs-backend-wasm from npm (the package's
// node-wasm build; the default node build wants a native binary). Runs on tfjs's pure-JS "cpu" backend.
// Each crop is a binary PPM (P6, 8-bit RGB), fed to the network as an int tensor of its pixels.
'use strict';

const fs = require('fs');
const path = require('path');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const { tf } = faceapi;

function readPpm(file) {
  const bytes = fs.readFileSync(file);
  // Header: "P6", width, height, maxval, separated by whitespace, then one whitespace byte and the pixels.
  const fields = [];
  let at = 0;
  while (fields.length < 4) {
    while (/\s/.test(String.fromCharCode(bytes[at]))) at += 1;
    let token = '';
    while (!/\s/.test(String.fromCharCode(bytes[at]))) token += String.fromCharCode(bytes[at++]);
    fields.push(token);
  }
  const [magic, width, height, maxval] = [fields[0], Number(fields[1]), Number(fields[2]), Number(fields[3])];
  if (magic !== 'P6' || maxval !== 255) throw new Error(`${file}: not an 8-bit binary PPM`);
  const pixels = bytes.subarray(at + 1, at + 1 + width * height * 3);
  return tf.tensor3d(Int32Array.from(pixels), [height, width, 3], 'int32');
}

async function main() {
  const [manifestFile, outFile, ...crops] = process.argv.slice(2);
  if (!outFile || crops.length === 0) throw new Error('usage: face_api_reference.js MANIFEST OUT.json CROP.ppm...');
  await tf.setBackend('cpu');
  await tf.ready();
  const groups = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
  const folder = path.dirname(manifestFile);
  const data = Buffer.concat(groups.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(folder, p)))));
  const buffer = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  const weightMap = tf.io.decodeWeights(buffer, groups.flatMap((g) => g.weights));
  const net = new faceapi.FaceRecognitionNet();
  net.loadFromWeightMap(weightMap);
  const descriptors = {};
  for (const crop of crops) {
    const image = readPpm(crop);
    descriptors[path.basename(crop)] = Array.from(await net.computeFaceDescriptor(image));
    image.dispose();
  }
  const result = {
    producer: 'tests/face_api_reference.js',
    face_api: faceapi.version,
    tfjs: tf.version_core,
    backend: tf.getBackend(),
    descriptors,
  };
  fs.writeFileSync(outFile, `${JSON.stringify(result, null, 1)}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
});
