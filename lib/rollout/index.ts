export * from './sequences.js';
export * from './generate.js';
