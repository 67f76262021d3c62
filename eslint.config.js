// ESLint for the TypeScript tree (lib/, test/, bench/, scripts/): typescript-eslint's recommended
// rules, plus the few that catch real mistakes in this code base (floating promises in trainers,
// unused variables). Formatting is Prettier's job (.prettierrc.json), not ESLint's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'build-*/**', 'node_modules/**', '.device/**', 'docs/api/**', 'rlhf-demo/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: false } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    rules: {
      // The code base sequences statements with the comma operator (`a.set(g), await a.step()`).
      '@typescript-eslint/no-unused-expressions': 'off',
      // Tests match aligned terminal columns literally.
      'no-regex-spaces': 'off',
    },
  },
  // Evaluated in the page by Chromium.
  { files: ['test/helpers/layout-check.js'], languageOptions: { globals: { document: 'readonly', window: 'readonly', getComputedStyle: 'readonly' } } },
  // Tests match terminal output, ANSI escapes included.
  { files: ['test/**/*.ts'], rules: { 'no-control-regex': 'off' } },
  { files: ['**/*.cjs'], rules: { '@typescript-eslint/no-require-imports': 'off' } },
  {
    files: ['**/*.mjs', '**/*.cjs', '**/*.js'],
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', __dirname: 'readonly', require: 'readonly', module: 'writable' },
    },
  },
);
