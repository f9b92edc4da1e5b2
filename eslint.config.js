import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'scratch/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Modules talk to each other through their index.ts only.
      'no-restricted-imports': ['error', {
        patterns: [{
          regex: '^\\.\\./(balancer|cli|config|deploy|extorport|host-doctor|keysync|lab|log|metrics|migrate|pt|relay|supervisor|tor|transports)/(?!index\\.js$)',
          message: 'Import another module through its index.js (its public face), not its internals.',
        }],
      }],
    },
  },
);
