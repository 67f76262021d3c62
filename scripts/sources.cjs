// Prints the native source list for one build, space-separated, from native/sources.json.
//   node scripts/sources.cjs addon-cpu   -> core + cpu + model + napi + cpuOnly (node-gyp's addon)
//   node scripts/sources.cjs engine-cpu  -> core + cpu + model + cpuOnly (what the native tests link)
// CMakeLists.txt reads the same JSON itself; test/repo/build-sources.test.ts checks they agree.
'use strict';
const path = require('node:path');
const s = require(path.join(__dirname, '..', 'native', 'sources.json'));
const groups = {
  'addon-cpu': [...s.core, ...s.cpu, ...s.model, ...s.napi, ...s.cpuOnly],
  'engine-cpu': [...s.core, ...s.cpu, ...s.model, ...s.cpuOnly],
  tests: s.tests,
};
const which = process.argv[2];
if (!groups[which]) {
  console.error(`usage: node scripts/sources.cjs ${Object.keys(groups).join('|')}`);
  process.exit(2);
}
process.stdout.write(groups[which].join(' '));
