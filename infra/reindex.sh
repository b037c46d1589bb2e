#!/usr/bin/env bash
# The steps of the reindex workflows (infra/github/reindex.yml, infra/gitlab/.gitlab-ci.yml),
# one script so CI can run them end to end: index every dataset cloudify.toml lists into the
# bucket, publish the STAC catalog to a public bucket, and into a static-site checkout (GitHub
# Pages) committed and pushed only when it changed. Copy it beside your cloudify.toml as
# cloudify-reindex.sh.
#
# Settings, from the environment (the S3 ones as the AWS SDKs read them: AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL for R2 or another S3-compatible store):
#   CLOUDIFY_BUCKET      the bucket the index lives in: s3://BUCKET[/PREFIX] or a folder
#   CLOUDIFY_CONFIG      the datasets' list (default cloudify.toml)
#   CLOUDIFY_PUBLISH_TO  optional: s3://BUCKET[/PREFIX] (or a folder) the catalog is copied to
#   CLOUDIFY_PUBLIC_URL  optional: the address CLOUDIFY_PUBLISH_TO is served at
#   CLOUDIFY_PAGES_DIR   optional: a checkout of the static site's branch (gh-pages)
#   CLOUDIFY_PAGES_URL   optional: the address the static site is served at
#   CLOUDIFY             the cloudify binary (default: cloudify on the PATH)
# It exits non-zero when any dataset failed to index; the others are still published.
set -euo pipefail
cloudify=${CLOUDIFY:-cloudify}
: "${CLOUDIFY_BUCKET:?names the bucket the index lives in}"

status=0
"$cloudify" index --bucket "$CLOUDIFY_BUCKET" --config "${CLOUDIFY_CONFIG:-cloudify.toml}" \
  || status=$?

if [ -n "${CLOUDIFY_PUBLISH_TO:-}" ]; then
  "$cloudify" publish --bucket "$CLOUDIFY_BUCKET" --to "$CLOUDIFY_PUBLISH_TO" \
    ${CLOUDIFY_PUBLIC_URL:+--public-url "$CLOUDIFY_PUBLIC_URL"}
fi

if [ -n "${CLOUDIFY_PAGES_DIR:-}" ]; then
  "$cloudify" publish --bucket "$CLOUDIFY_BUCKET" --to "$CLOUDIFY_PAGES_DIR" \
    ${CLOUDIFY_PAGES_URL:+--public-url "$CLOUDIFY_PAGES_URL"}
  cd "$CLOUDIFY_PAGES_DIR"
  git add --all
  if git diff --cached --quiet; then
    echo "static site: unchanged, nothing committed"
  else
    git -c user.name="${GIT_AUTHOR_NAME:-cloudify reindex}" \
      -c user.email="${GIT_AUTHOR_EMAIL:-cloudify-reindex@localhost}" \
      commit --quiet --message "STAC catalog as of $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    git push --quiet origin HEAD
    echo "static site: committed and pushed $(git rev-parse --short HEAD)"
  fi
fi
exit "$status"
