import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

// What each part of src/ may import of the others: the layers of README.md's Architecture ("imports" column), so
// that an import against the grain fails lint (test/lint-boundaries.test.ts). Imports within a folder, packages
// and node: builtins are free. An entry is a root module (`errors`), a folder (`protocol/`) or one file of a
// folder (`app-loader/spec`).
export const IMPORTS = {
  'src/protocol': ['errors'],
  'src/interfaces': ['errors', 'exchange', 'node-internals', 'protocol/', 'values'],
  'src/server': ['address', 'errors', 'exchange', 'node-internals', 'protocol/'],
  'src/app-loader': ['errors', 'interfaces/', 'values'],
  'src/ops': ['address', 'errors', 'options', 'server/'],
  'src/master': ['address', 'app-loader/spec', 'errors', 'ops/', 'options', 'server/'],
  'src/worker': [
    'address', 'app-loader/', 'errors', 'handler', 'interfaces/', 'log', 'master/messages', 'node-internals',
    'ops/counters', 'ops/worker-metrics', 'server/',
  ],
  'src/commands': ['address', 'errors', 'ops/stats', 'options', 'protocol/'],
  'src/errors.ts': [],
  'src/exchange.ts': [],
  'src/values.ts': [],
  'src/node-internals.ts': [],
  'src/address.ts': ['errors'],
  'src/log-file.ts': ['errors'],
  'src/options.ts': ['address', 'errors', 'protocol/'],
  'src/log.ts': ['log-file', 'options'],
  'src/config.ts': ['address', 'errors', 'options', 'values'],
  'src/handler.ts': ['app-loader/', 'exchange', 'interfaces/'],
};

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function boundary(where, allowed) {
  const folder = !where.endsWith('.ts');
  // From a folder, the rest of src/ is `../`; from a root module, `./`.
  const up = folder ? '\\.\\./' : '\\./';
  const entries = allowed.map((entry) => (entry.endsWith('/') ? escape(entry) : `${escape(entry)}\\.js$`));
  const regex = entries.length === 0 ? `^${up}` : `^${up}(?!(?:${entries.join('|')}))`;
  return {
    files: [folder ? `${where}/**/*.ts` : where],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{
          regex,
          caseSensitive: true,
          message: `${where} may import only ${allowed.length === 0 ? 'nothing' : allowed.join(', ')} of src/ (README.md, Architecture).`,
        }],
      }],
    },
  };
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.ci/node24/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Everything here runs on Node: its globals (timers, fetch's Request/Response, web streams...).
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { ...globals.commonjs } },
    // CommonJS loads with require().
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  ...Object.entries(IMPORTS).map(([where, allowed]) => boundary(where, allowed)),
);
